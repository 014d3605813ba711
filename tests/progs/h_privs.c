/* h_privs MODE PORT
 * Class 7 probe: calls the tracer carries out must not borrow its rights.
 * MODE:
 *   userns-bind  unshare(CLONE_NEWUSER) (the program is "root" in its own
 *                user namespace), then bind 127.0.0.1:PORT (PORT < 1024)
 *   mark-cmsg    as an unprivileged user: sendmsg a datagram to
 *                127.0.0.1:PORT with an SO_MARK control message, then one
 *                with SO_PRIORITY 7, then one with IP_TTL (harmless)
 * Prints name=OK|<ERRNO> per step. Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void show(const char *name, long r) {
    printf("%s=%s\n", name, r < 0 ? strerrorname_np(errno) : "OK");
    fflush(stdout);
}

static long send_cmsg(int fd, struct sockaddr_in *to, int level, int type, int value) {
    char buf[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { .iov_base = "x", .iov_len = 1 };
    struct msghdr m = { .msg_name = to, .msg_namelen = sizeof *to, .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = buf, .msg_controllen = sizeof buf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &value, sizeof value);
    return sendmsg(fd, &m, 0);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: h_privs MODE PORT\n"); return 2; }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!strcmp(argv[1], "userns-bind")) {
        show("unshare", unshare(CLONE_NEWUSER));
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        show("bind", bind(fd, (struct sockaddr *)&sa, sizeof sa));
    } else if (!strcmp(argv[1], "mark-cmsg")) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        show("so_mark", send_cmsg(fd, &sa, SOL_SOCKET, SO_MARK, 7));
        show("so_priority_7", send_cmsg(fd, &sa, SOL_SOCKET, SO_PRIORITY, 7));
        show("ip_ttl", send_cmsg(fd, &sa, IPPROTO_IP, IP_TTL, 9));
    } else {
        fprintf(stderr, "bad mode\n");
        return 2;
    }
    return 0;
}
