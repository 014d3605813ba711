/* udp_send MODE HOST PORT [HOST2 PORT2]
 * Sends the datagram "ping" from a UDP socket of HOST's family (IPv4 or IPv6;
 * IPv4-mapped IPv6 such as ::ffff:127.0.0.1 uses an AF_INET6 socket) to
 * HOST:PORT. MODE picks the syscall:
 *   sendto        sendto() with the destination address
 *   sendmsg       sendmsg() with msg_name = destination
 *   sendmmsg      ONE sendmmsg() call with two messages: the first to
 *                 HOST:PORT, the second to HOST2:PORT2 (default: HOST:PORT).
 *                 HOST2 is used as given, even if its family differs.
 *   connect-send  connect() the socket to HOST:PORT, then send() (no address)
 * Prints, one key=value per line:
 *   result=N|errno=NAME    the return value of the sending call (for
 *                          connect-send a failing connect gives errno=NAME
 *                          and connect=failed)
 *   sent=N                 sendmmsg only: messages sent (0 on error)
 *   len0=N len1=N          sendmmsg only: msg_len of each message
 *   so_error=NAME          sendmmsg only, when SO_ERROR holds a pending error
 * Exits 0; usage errors exit 2. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Resolves a numeric HOST/PORT into *ss; family AF_UNSPEC means any. */
static int resolve(const char *host, const char *port, struct sockaddr_storage *ss,
                   socklen_t *len) {
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV }, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: udp_send sendto|sendmsg|sendmmsg|connect-send HOST PORT [HOST2 PORT2]\n");
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) { usage(); return 2; }
    const char *mode = argv[1];
    struct sockaddr_storage dst, dst2;
    socklen_t len, len2;
    if (resolve(argv[2], argv[3], &dst, &len)) { fprintf(stderr, "bad host/port\n"); return 2; }
    if (argc == 6) {
        if (resolve(argv[4], argv[5], &dst2, &len2)) { fprintf(stderr, "bad host2/port2\n"); return 2; }
    } else {
        dst2 = dst;
        len2 = len;
    }
    int fd = socket(dst.ss_family, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 2; }

    char payload[] = "ping";
    ssize_t r;
    if (!strcmp(mode, "sendto")) {
        r = sendto(fd, payload, 4, 0, (struct sockaddr *)&dst, len);
    } else if (!strcmp(mode, "sendmsg")) {
        struct iovec iov = { .iov_base = payload, .iov_len = 4 };
        struct msghdr mh = { .msg_name = &dst, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1 };
        r = sendmsg(fd, &mh, 0);
    } else if (!strcmp(mode, "sendmmsg")) {
        struct iovec iov[2] = { { payload, 4 }, { payload, 4 } };
        struct mmsghdr mm[2];
        memset(mm, 0, sizeof mm);
        mm[0].msg_hdr = (struct msghdr){ .msg_name = &dst, .msg_namelen = len, .msg_iov = &iov[0], .msg_iovlen = 1 };
        mm[1].msg_hdr = (struct msghdr){ .msg_name = &dst2, .msg_namelen = len2, .msg_iov = &iov[1], .msg_iovlen = 1 };
        int n = sendmmsg(fd, mm, 2, 0);
        int err = n < 0 ? errno : 0;
        if (n < 0) printf("errno=%s\n", strerrorname_np(err));
        else printf("result=%d\n", n);
        printf("sent=%d\n", n < 0 ? 0 : n);
        printf("len0=%u\nlen1=%u\n", mm[0].msg_len, mm[1].msg_len);
        /* A partial sendmmsg parks the error of the failing message here. */
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
            printf("so_error=%s\n", strerrorname_np(soerr));
        fflush(stdout);
        close(fd);
        return 0;
    } else if (!strcmp(mode, "connect-send")) {
        if (connect(fd, (struct sockaddr *)&dst, len) < 0) {
            printf("connect=failed\nerrno=%s\n", strerrorname_np(errno));
            fflush(stdout);
            close(fd);
            return 0;
        }
        r = send(fd, payload, 4, 0);
    } else {
        usage();
        return 2;
    }
    if (r < 0) printf("errno=%s\n", strerrorname_np(errno));
    else printf("result=%zd\n", r);
    fflush(stdout);
    close(fd);
    return 0;
}
