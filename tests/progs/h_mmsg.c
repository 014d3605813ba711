/* h_mmsg MODE PORT
 * Class 15 probe: sendmmsg of three messages on a TCP socket connected to
 * 127.0.0.1:PORT, as untraced. Modes (what the reader does in brackets):
 *   whole     3 x 16 MiB, blocking [reads all]: every message whole
 *   nonblock  the same, O_NONBLOCK [holds]: one message, cut short
 *   timeout   SO_SNDTIMEO 300 ms [holds]: one message, cut short
 *   timeout1  5 bytes then 2 x 16 MiB, SO_SNDTIMEO [holds]: two, the second short
 *   reset     5 bytes then 2 x 16 MiB [resets once its queue is still]: two
 *   sig       a caught SIGALRM (SA_RESTART) after 300 ms [holds]: one, short
 *   ts        3 x 16 MiB with TX timestamps on (the error queue fills, the
 *             connection is healthy) [reads all]: every message whole
 *   empty     0, 5, 0 bytes [reads all]: three
 *   after     5 bytes, then a bad buffer address [reads all]: one
 * Prints n=COUNT ERRNO lens=A,B,C, each length as full, part (cut
 * short: how much fits in the socket buffers varies) or its value
 * (777: not written). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <linux/net_tstamp.h>
#define MB (1 << 20)
static char buf[16 * MB];
static void h(int s) { (void)s; }
int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: h_mmsg MODE PORT\n"); return 2; }
    const char *mode = argv[1];
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("connect"); return 2; }
    memset(buf, 'x', sizeof buf);
    struct iovec one = { buf, sizeof buf }, five = { buf, 5 }, zero = { buf, 0 }, bad = { (void *)8, 100 };
    struct mmsghdr mm[3];
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 3; i++) { mm[i].msg_hdr.msg_iov = &one; mm[i].msg_hdr.msg_iovlen = 1; mm[i].msg_len = 777; }
    if (!strcmp(mode, "nonblock")) fcntl(fd, F_SETFL, O_NONBLOCK);
    if (!strcmp(mode, "timeout1")) { struct timeval tv = { 0, 300000 }; setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); mm[0].msg_hdr.msg_iov = &five; }
    if (!strcmp(mode, "reset")) { mm[0].msg_hdr.msg_iov = &five; signal(SIGPIPE, SIG_IGN); }
    if (!strcmp(mode, "timeout")) { struct timeval tv = { 0, 300000 }; setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); }
    if (!strcmp(mode, "sig") || !strcmp(mode, "signr")) {
        struct sigaction act = { .sa_handler = h };
        act.sa_flags = !strcmp(mode, "sig") ? SA_RESTART : 0;
        sigaction(SIGALRM, &act, 0);
        struct itimerval it = { { 0, 0 }, { 0, 300000 } };
        setitimer(ITIMER_REAL, &it, 0);
    }
    if (!strcmp(mode, "ts")) {
        int v = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_TSONLY | SOF_TIMESTAMPING_OPT_ID;
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &v, sizeof v);
    }
    if (!strcmp(mode, "empty")) { mm[0].msg_hdr.msg_iov = &zero; mm[1].msg_hdr.msg_iov = &five; mm[2].msg_hdr.msg_iov = &zero; }
    if (!strcmp(mode, "after")) { mm[0].msg_hdr.msg_iov = &five; mm[1].msg_hdr.msg_iov = &bad; }
    int n = sendmmsg(fd, mm, 3, 0);
    int e = errno;
    const char *en = n < 0 ? strerrorname_np(e) : "-";
    printf("n=%d %s lens=", n, en);
    for (int i = 0; i < 3; i++) {
        unsigned l = mm[i].msg_len;
        if (l == 16 * MB) printf("full");
        else if (l > 1000) printf("part");
        else printf("%u", l);
        printf(i < 2 ? "," : "\n");
    }
    fflush(stdout);
    close(fd);
    return 0;
}
