/* h_anyaddr TCP_PORT UDP_PORT [PKTINFO_PORT]
 * Class 3/15 probe: destinations the kernel reads as loopback. Connects to
 * 0.0.0.0:TCP_PORT (IPv4), [::]:TCP_PORT and [::ffff:0.0.0.0]:TCP_PORT
 * (IPv6), and sends a datagram to 0.0.0.0:UDP_PORT, to
 * [::ffff:0.0.0.0]:UDP_PORT and, with an AF_UNSPEC family, to 0.0.0.0 on an
 * IPv4 socket. With PKTINFO_PORT: sendmsg to 0.0.0.0:PKTINFO_PORT with an
 * IP_PKTINFO control message whose source is 127.0.0.2 (so the kernel
 * sends it to 127.0.0.2:PKTINFO_PORT). Prints name=OK|<ERRNO> per step.
 * Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>

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
    if (argc != 3 && argc != 4) { fprintf(stderr, "usage: h_anyaddr TCP_PORT UDP_PORT [PKTINFO_PORT]\n"); return 2; }
    if (argc == 4) {
        int fd4 = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
        char cbuf[CMSG_SPACE(sizeof(struct in_pktinfo))] = { 0 };
        struct iovec iov = { "x", 1 };
        struct msghdr m = { .msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov, .msg_iovlen = 1,
                            .msg_control = cbuf, .msg_controllen = sizeof cbuf };
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = IPPROTO_IP;
        h->cmsg_type = IP_PKTINFO;
        h->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        struct in_pktinfo pi = { 0 };
        inet_pton(AF_INET, "127.0.0.2", &pi.ipi_spec_dst);
        memcpy(CMSG_DATA(h), &pi, sizeof pi);
        show("udp_0.0.0.0_pktinfo", sendmsg(fd4, &m, 0));
        close(fd4);
        return 0;
    }
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
