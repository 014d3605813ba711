/* h_portrange PORT
 * Class 3 probe (bind variant): steer the port the kernel chooses with
 * IP_LOCAL_PORT_RANGE = PORT..PORT, then bind to port 0 (TCP, then listen;
 * UDP), and listen() on an unbound TCP socket. Prints
 * name=OK:<port chosen == PORT>|<ERRNO> per step. Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif

static int port;

static void step(const char *name, int type, int do_bind) {
    int fd = socket(AF_INET, type, 0);
    unsigned int range = (unsigned int)port | ((unsigned int)port << 16);
    setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &range, sizeof range);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (do_bind && bind(fd, (struct sockaddr *)&sa, sizeof sa)) {
        printf("%s=bind:%s\n", name, strerrorname_np(errno));
        close(fd);
        return;
    }
    if (type == SOCK_STREAM && listen(fd, 4)) {
        printf("%s=listen:%s\n", name, strerrorname_np(errno));
        close(fd);
        return;
    }
    socklen_t l = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &l);
    printf("%s=OK:%s\n", name, ntohs(sa.sin_port) == port ? "chosen" : "other");
    close(fd);
}

/* IPv6 socket bound to a v4-mapped address: bind port 0, then listen on
 * the same socket whatever the bind said. */
static void mapped(void) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    unsigned int range = (unsigned int)port | ((unsigned int)port << 16);
    setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &range, sizeof range);
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6 };
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &sa.sin6_addr);
    int b = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    printf("tcp6_mapped_bind0=%s", b ? strerrorname_np(errno) : "OK");
    if (listen(fd, 4)) printf(" listen=%s\n", strerrorname_np(errno));
    else {
        socklen_t l = sizeof sa;
        getsockname(fd, (struct sockaddr *)&sa, &l);
        printf(" listen=OK:%s\n", ntohs(sa.sin6_port) == port ? "chosen" : "other");
    }
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: h_portrange PORT\n"); return 2; }
    port = atoi(argv[1]);
    mapped();
    step("tcp_bind0_listen", SOCK_STREAM, 1);
    step("udp_bind0", SOCK_DGRAM, 1);
    step("tcp_listen_unbound", SOCK_STREAM, 0);
    return 0;
}
