/* h_reread MODE TCP_PORT DENIED_UDP_PORT ATTEMPTS
 * Class 3 probe: a sibling thread changes what the kernel would read again
 * after the tracer's decision. DENIED_UDP_PORT (127.0.0.1) is denied by
 * the test's policy; 127.0.0.1:TCP_PORT accepts (allowed).
 * MODE:
 *   null-name   sendmsg on an unconnected UDP socket with msg_name NULL,
 *               while the sibling sets msg_name to the denied address
 *   unspec      connect(AF_UNSPEC) on a UDP socket while the sibling sets
 *               the family to AF_INET (the denied address), then send()
 *   tcp-fdswap  sendto/sendmsg with the denied address on a connected TCP
 *               socket (TCP ignores it) while the sibling dup2()s a UDP
 *               socket onto that descriptor number and back
 *   socketcall  i386 socketcall(SENDTO) on a UDP socket: the args array
 *               names a NULL address (connected socket) while the sibling
 *               points it at the denied address
 * Prints attempts=N. Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int stop;
static struct sockaddr_in denied, allowed;
static struct msghdr mh;
static struct iovec iov = { .iov_base = "x", .iov_len = 1 };
static volatile struct sockaddr_in flip;
static int tcp_fd = 100, udp_spare;
static volatile uint32_t *args32;

static void *null_name(void *a) {
    (void)a;
    while (!stop) { mh.msg_name = &denied; mh.msg_namelen = sizeof denied; mh.msg_name = NULL; mh.msg_namelen = 0; }
    return NULL;
}
static void *unspec(void *a) {
    (void)a;
    while (!stop) { flip.sin_family = AF_INET; flip.sin_family = AF_UNSPEC; }
    return NULL;
}
static void *fdswap(void *a) {
    int tcp = *(int *)a;
    while (!stop) { dup2(udp_spare, tcp_fd); dup2(tcp, tcp_fd); }
    return NULL;
}
static void *sc(void *a) {
    (void)a;
    while (!stop) { args32[4] = (uint32_t)(uintptr_t)(args32 + 16); args32[4] = 0; }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: h_reread MODE TCP_PORT DENIED_UDP_PORT ATTEMPTS\n"); return 2; }
    const char *mode = argv[1];
    allowed = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    denied = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
    allowed.sin_addr.s_addr = denied.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long attempts = atol(argv[4]);
    /* The allowed peer may close: EPIPE, not death, is what we count on. */
    signal(SIGPIPE, SIG_IGN);
    pthread_t t;
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    if (!strcmp(mode, "null-name")) {
        mh.msg_iov = &iov; mh.msg_iovlen = 1;
        pthread_create(&t, NULL, null_name, NULL);
        for (long i = 0; i < attempts; i++) sendmsg(udp, &mh, 0);
    } else if (!strcmp(mode, "unspec")) {
        flip = denied;
        flip.sin_family = AF_UNSPEC;
        pthread_create(&t, NULL, unspec, NULL);
        for (long i = 0; i < attempts; i++) {
            int s = socket(AF_INET, SOCK_DGRAM, 0);
            if (connect(s, (struct sockaddr *)&flip, sizeof flip) == 0) send(s, "x", 1, MSG_DONTWAIT);
            close(s);
        }
    } else if (!strcmp(mode, "tcp-fdswap")) {
        int tcp = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(tcp, (struct sockaddr *)&allowed, sizeof allowed)) { perror("connect"); return 2; }
        dup2(tcp, tcp_fd);
        udp_spare = udp;
        pthread_create(&t, NULL, fdswap, &tcp);
        struct msghdr m = { .msg_name = &denied, .msg_namelen = sizeof denied, .msg_iov = &iov, .msg_iovlen = 1 };
        for (long i = 0; i < attempts; i++) {
            if (i % 2) sendto(tcp_fd, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&denied, sizeof denied);
            else sendmsg(tcp_fd, &m, MSG_DONTWAIT);
        }
    } else if (!strcmp(mode, "socketcall")) {
        /* args: fd, buf, len, flags, addr, addrlen; the address at +64. */
        args32 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
        if (args32 == MAP_FAILED) return 2;
        memcpy((void *)(args32 + 16), &denied, sizeof denied);
        memcpy((void *)(args32 + 32), "x", 1);
        if (connect(udp, (struct sockaddr *)&allowed, sizeof allowed)) { perror("connect"); return 2; }
        args32[0] = udp; args32[1] = (uint32_t)(uintptr_t)(args32 + 32); args32[2] = 1;
        args32[3] = MSG_DONTWAIT; args32[4] = 0; args32[5] = sizeof denied;
        pthread_create(&t, NULL, sc, NULL);
        for (long i = 0; i < attempts; i++) {
            long ret;
            __asm__ volatile("int $0x80" : "=a"(ret) : "a"(102), "b"(11), "c"(args32) : "memory");
        }
    } else {
        fprintf(stderr, "bad mode\n");
        return 2;
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("attempts=%ld\n", attempts);
    return 0;
}
