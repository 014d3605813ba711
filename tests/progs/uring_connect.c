/* uring_connect HOST PORT
 * Connects an IPv4 TCP socket to HOST:PORT through io_uring
 * (IORING_OP_CONNECT) using raw syscalls only (no liburing): io_uring_setup,
 * mmap of the SQ ring, CQ ring and SQE array, one connect SQE submitted with
 * io_uring_enter(fd, 1, 1, IORING_ENTER_GETEVENTS), then the CQE is read.
 * Prints, one key=value per line:
 *   setup=ok | setup_errno=NAME   io_uring_setup outcome (exit 3 on failure;
 *                                 a failing mmap also exits 3)
 *   enter_errno=NAME              only if io_uring_enter fails (exit 3)
 *   cqe_res=N                     0 on success, -errno otherwise
 *   cqe_errno=NAME                only when cqe_res < 0
 *   data=LINE                     after a successful connect: the peer's
 *                                 first line (waits at most 5 s)
 * Exits 0; usage errors exit 2. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: uring_connect HOST PORT\n"); return 2; }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock < 0) { perror("socket"); return 2; }

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = (int)syscall(__NR_io_uring_setup, 4, &p);
    if (ring < 0) {
        printf("setup_errno=%s\n", strerrorname_np(errno));
        fflush(stdout);
        return 3;
    }
    printf("setup=ok\n");
    fflush(stdout);

    /* Map the rings. With IORING_FEAT_SINGLE_MMAP one mapping serves both. */
    size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(__u32);
    size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = p.features & IORING_FEAT_SINGLE_MMAP;
    if (single && cq_sz > sq_sz) sq_sz = cq_sz;
    char *sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) { perror("mmap sq"); return 3; }
    char *cq = sq;
    if (!single) {
        cq = mmap(NULL, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
        if (cq == MAP_FAILED) { perror("mmap cq"); return 3; }
    }
    struct io_uring_sqe *sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
                                     PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) { perror("mmap sqes"); return 3; }

    unsigned *sq_tail = (unsigned *)(sq + p.sq_off.tail);
    unsigned *sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    unsigned *sq_array = (unsigned *)(sq + p.sq_off.array);
    unsigned *cq_head = (unsigned *)(cq + p.cq_off.head);
    unsigned *cq_tail = (unsigned *)(cq + p.cq_off.tail);
    unsigned *cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);

    /* Fill one connect SQE: addr = sockaddr pointer, off (addr2) = addrlen. */
    unsigned tail = *sq_tail, idx = tail & *sq_mask;
    struct io_uring_sqe *sqe = &sqes[idx];
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_CONNECT;
    sqe->fd = sock;
    sqe->addr = (uintptr_t)&sa;
    sqe->off = sizeof sa;
    sqe->user_data = 0x1234;
    sq_array[idx] = idx;
    __atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);

    int n = (int)syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
    if (n < 0) {
        printf("enter_errno=%s\n", strerrorname_np(errno));
        fflush(stdout);
        return 3;
    }

    /* min_complete=1, so the CQE is there; check anyway. */
    unsigned head = *cq_head;
    if (head == __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE)) {
        printf("cqe=missing\n");
        fflush(stdout);
        return 3;
    }
    int res = cqes[head & *cq_mask].res;
    __atomic_store_n(cq_head, head + 1, __ATOMIC_RELEASE);
    printf("cqe_res=%d\n", res);
    if (res < 0) printf("cqe_errno=%s\n", strerrorname_np(-res));

    if (res == 0) {
        char buf[128];
        size_t got = 0;
        /* Bounded: at most 50 polls of 100 ms (5 s) and one buffer. */
        for (int i = 0; i < 50 && got < sizeof buf - 1; i++) {
            struct pollfd pf = { .fd = sock, .events = POLLIN };
            if (poll(&pf, 1, 100) <= 0) continue;
            ssize_t r = read(sock, buf + got, sizeof buf - 1 - got);
            if (r <= 0) break;
            got += r;
            if (memchr(buf, '\n', got)) break;
        }
        buf[got] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        printf("data=%s\n", buf);
    }
    fflush(stdout);
    close(ring);
    close(sock);
    return 0;
}
