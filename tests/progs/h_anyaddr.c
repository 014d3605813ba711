/* h_anyaddr TCP_PORT UDP_PORT
 * Class 3/15 probe: destinations the kernel reads as loopback. Connects to
 * 0.0.0.0:TCP_PORT (IPv4), [::]:TCP_PORT and [::ffff:0.0.0.0]:TCP_PORT
 * (IPv6), and sends a datagram to 0.0.0.0:UDP_PORT, to
 * [::ffff:0.0.0.0]:UDP_PORT and, with an AF_UNSPEC family, to 0.0.0.0 on an
 * IPv4 socket. Prints name=OK|<ERRNO> per step. Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void show(const char *name, long r) {
    printf("%s=%s\n", name, r < 0 ? strerrorname_np(errno) : "OK");
    fflush(stdout);
}

static struct sockaddr_in6 v6(const char *ip, int port) {
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: h_anyaddr TCP_PORT UDP_PORT\n"); return 2; }
    int tp = atoi(argv[1]), up = atoi(argv[2]), fd;
    struct sockaddr_in any4 = { .sin_family = AF_INET, .sin_port = htons(tp) };
    fd = socket(AF_INET, SOCK_STREAM, 0);
    show("tcp_0.0.0.0", connect(fd, (void *)&any4, sizeof any4)); close(fd);
    struct sockaddr_in6 a6 = v6("::", tp);
    fd = socket(AF_INET6, SOCK_STREAM, 0);
    show("tcp_[::]", connect(fd, (void *)&a6, sizeof a6)); close(fd);
    a6 = v6("::ffff:0.0.0.0", tp);
    fd = socket(AF_INET6, SOCK_STREAM, 0);
    show("tcp_[::ffff:0.0.0.0]", connect(fd, (void *)&a6, sizeof a6)); close(fd);
    struct sockaddr_in u4 = { .sin_family = AF_INET, .sin_port = htons(up) };
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    show("udp_0.0.0.0", sendto(fd, "x", 1, 0, (void *)&u4, sizeof u4));
    u4.sin_family = AF_UNSPEC;
    show("udp_unspec_0.0.0.0", sendto(fd, "x", 1, 0, (void *)&u4, sizeof u4));
    close(fd);
    a6 = v6("::ffff:0.0.0.0", up);
    fd = socket(AF_INET6, SOCK_DGRAM, 0);
    show("udp_[::ffff:0.0.0.0]", sendto(fd, "x", 1, 0, (void *)&a6, sizeof a6)); close(fd);
    return 0;
}
