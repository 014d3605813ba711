/* iso_opts opts|nonblock HOST PORT
 * What a TCP socket carries through a connect: for isolation's handover
 * (tests/isolate.rs), where the socket the program connects is replaced by
 * one made in another network namespace. HOST:PORT is a listener that
 * accepts nothing and sends nothing (IPv4).
 *
 * opts: socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC), sets TCP_NODELAY,
 *   SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT,
 *   TCP_CONGESTION (reno), SO_RCVBUF, SO_SNDBUF, IP_TOS, SO_LINGER,
 *   SO_RCVTIMEO and SO_SNDTIMEO, connects (blocking), then reads every one
 *   back with getsockopt, and recv()s once: the silent peer makes it time
 *   out after SO_RCVTIMEO.
 * nonblock: socket(AF_INET, SOCK_STREAM|SOCK_NONBLOCK) (no close-on-exec),
 *   connect() (EINPROGRESS expected), poll for POLLOUT (at most 5 s), then
 *   SO_ERROR; recv() then fails at once (EAGAIN).
 *
 * Prints key=value lines. Both modes print:
 *   connect=ok|NAME     connect's result (errno name)
 *   cloexec=0|1         fcntl(F_GETFD) & FD_CLOEXEC after connect
 *   nonblock=0|1        fcntl(F_GETFL) & O_NONBLOCK after connect
 *   local=ADDR          getsockname's address (without the port)
 *   peer=ADDR:PORT      getpeername
 *   same_netns=yes|no   whether the socket lives in this process's network
 *                       namespace (SIOCGSKNS against /proc/self/ns/net)
 *   recv=NAME|N         the recv() result (errno name, or bytes)
 *   recv_ms=N           how long that recv() took, in milliseconds
 * opts also prints nodelay= keepalive= keepidle= keepintvl= keepcnt=
 *   user_timeout= congestion= rcvbuf= sndbuf= tos= linger=ON,SECS
 *   rcvtimeo=SEC.USEC sndtimeo=SEC.USEC; nonblock prints
 *   poll=POLLOUT|timeout|... and so_error=NAME|0.
 * Exits 0 when it got that far, 1 when the socket or connect failed
 * unexpectedly, 2 on usage errors. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif

static const char *ename(int e) {
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

static int geti(int fd, int level, int opt) {
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, opt, &v, &len) < 0) return -errno;
    return v;
}

static void seti(int fd, int level, int opt, int v, const char *name) {
    if (setsockopt(fd, level, opt, &v, sizeof v) < 0) {
        printf("set_%s=%s\n", name, ename(errno));
    }
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* The lines both modes print once connected. */
static void common(int fd) {
    printf("cloexec=%d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? 1 : 0);
    printf("nonblock=%d\n", (fcntl(fd, F_GETFL) & O_NONBLOCK) ? 1 : 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    char buf[INET_ADDRSTRLEN];
    if (getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        printf("local=%s\n", inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf));
    else
        printf("local=%s\n", ename(errno));
    len = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &len) == 0)
        printf("peer=%s:%d\n", inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf), ntohs(a.sin_port));
    else
        printf("peer=%s\n", ename(errno));
    /* The socket's namespace against ours, by inode. */
    int ns = ioctl(fd, SIOCGSKNS);
    struct stat sock_ns, mine;
    if (ns < 0 || fstat(ns, &sock_ns) < 0 || stat("/proc/self/ns/net", &mine) < 0)
        printf("same_netns=%s\n", ename(errno));
    else
        printf("same_netns=%s\n", sock_ns.st_ino == mine.st_ino ? "yes" : "no");
    if (ns >= 0) close(ns);
    char b[16];
    long t0 = now_ms();
    ssize_t r = recv(fd, b, sizeof b, 0);
    long t1 = now_ms();
    if (r < 0) printf("recv=%s\n", ename(errno));
    else printf("recv=%zd\n", r);
    printf("recv_ms=%ld\n", t1 - t0);
}

static int opts(const struct sockaddr_in *to) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { printf("socket=%s\n", ename(errno)); return 1; }
    seti(fd, IPPROTO_TCP, TCP_NODELAY, 1, "nodelay");
    seti(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "keepalive");
    seti(fd, IPPROTO_TCP, TCP_KEEPIDLE, 77, "keepidle");
    seti(fd, IPPROTO_TCP, TCP_KEEPINTVL, 13, "keepintvl");
    seti(fd, IPPROTO_TCP, TCP_KEEPCNT, 4, "keepcnt");
    seti(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 9000, "user_timeout");
    seti(fd, SOL_SOCKET, SO_RCVBUF, 65536, "rcvbuf");
    seti(fd, SOL_SOCKET, SO_SNDBUF, 98304, "sndbuf");
    seti(fd, IPPROTO_IP, IP_TOS, IPTOS_LOWDELAY, "tos");
    const char reno[] = "reno";
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, reno, strlen(reno)) < 0)
        printf("set_congestion=%s\n", ename(errno));
    struct linger lg = {.l_onoff = 1, .l_linger = 3};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
        printf("set_linger=%s\n", ename(errno));
    struct timeval rt = {.tv_sec = 0, .tv_usec = 700000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt) < 0)
        printf("set_rcvtimeo=%s\n", ename(errno));
    struct timeval st = {.tv_sec = 4, .tv_usec = 250000};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof st) < 0)
        printf("set_sndtimeo=%s\n", ename(errno));

    if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0) {
        printf("connect=%s\n", ename(errno));
        return 1;
    }
    printf("connect=ok\n");
    printf("nodelay=%d\n", geti(fd, IPPROTO_TCP, TCP_NODELAY));
    printf("keepalive=%d\n", geti(fd, SOL_SOCKET, SO_KEEPALIVE));
    printf("keepidle=%d\n", geti(fd, IPPROTO_TCP, TCP_KEEPIDLE));
    printf("keepintvl=%d\n", geti(fd, IPPROTO_TCP, TCP_KEEPINTVL));
    printf("keepcnt=%d\n", geti(fd, IPPROTO_TCP, TCP_KEEPCNT));
    printf("user_timeout=%d\n", geti(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
    printf("rcvbuf=%d\n", geti(fd, SOL_SOCKET, SO_RCVBUF));
    printf("sndbuf=%d\n", geti(fd, SOL_SOCKET, SO_SNDBUF));
    printf("tos=%d\n", geti(fd, IPPROTO_IP, IP_TOS));
    char cc[16] = {0};
    socklen_t cl = sizeof cc - 1;
    if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, &cl) < 0)
        printf("congestion=%s\n", ename(errno));
    else
        printf("congestion=%s\n", cc);
    struct linger g = {0};
    socklen_t gl = sizeof g;
    getsockopt(fd, SOL_SOCKET, SO_LINGER, &g, &gl);
    printf("linger=%d,%d\n", g.l_onoff, g.l_linger);
    struct timeval tv = {0};
    socklen_t tl = sizeof tv;
    getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &tl);
    printf("rcvtimeo=%ld.%06ld\n", (long)tv.tv_sec, (long)tv.tv_usec);
    tl = sizeof tv;
    getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &tl);
    printf("sndtimeo=%ld.%06ld\n", (long)tv.tv_sec, (long)tv.tv_usec);
    common(fd);
    close(fd);
    return 0;
}

static int nonblock(const struct sockaddr_in *to) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { printf("socket=%s\n", ename(errno)); return 1; }
    if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0)
        printf("connect=%s\n", ename(errno));
    else
        printf("connect=ok\n");
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n = poll(&p, 1, 5000);
    if (n == 1 && p.revents == POLLOUT) printf("poll=POLLOUT\n");
    else if (n == 0) printf("poll=timeout\n");
    else printf("poll=%d,0x%x\n", n, p.revents);
    int err = geti(fd, SOL_SOCKET, SO_ERROR);
    printf("so_error=%s\n", err == 0 ? "0" : ename(err < 0 ? -err : err));
    common(fd);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: iso_opts opts|nonblock HOST PORT\n"); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &to.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }
    if (!strcmp(argv[1], "opts")) return opts(&to);
    if (!strcmp(argv[1], "nonblock")) return nonblock(&to);
    fprintf(stderr, "usage: iso_opts opts|nonblock HOST PORT\n");
    return 2;
}
