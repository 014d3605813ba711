/* h_bigsend PORT
 * Class 15 probe: blocking TCP sends larger than any buffer, to a reader
 * on 127.0.0.1:PORT that reads everything. Untraced each returns the full
 * count; so must it traced. Sends 4 MiB with sendmsg (one buffer), sendmsg
 * (three buffers), sendmsg (three buffers, MSG_NOSIGNAL) and sendto with an
 * address (TCP ignores it), sendmsg with MSG_MORE, with a control message,
 * sendmmsg of two such messages; then, after shutdown(SHUT_WR), sendmsg with
 * MSG_NOSIGNAL (EPIPE, no SIGPIPE). Prints name=COUNT|<ERRNO>, then total=N. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MB (1 << 20)
static char buf[4 * MB];
static long total;

static void show(const char *name, ssize_t r) {
    if (r < 0) printf("%s=%s\n", name, strerrorname_np(errno));
    else { printf("%s=%zd\n", name, r); total += r; }
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: h_bigsend PORT\n"); return 2; }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("connect"); return 2; }
    memset(buf, 'x', sizeof buf);
    struct iovec one = { buf, sizeof buf };
    struct iovec three[3] = { { buf, MB }, { buf + MB, 2 * MB }, { buf + 3 * MB, MB } };
    struct msghdr m1 = { .msg_iov = &one, .msg_iovlen = 1 };
    struct msghdr m3 = { .msg_iov = three, .msg_iovlen = 3 };
    show("sendmsg_one_buffer", sendmsg(fd, &m1, 0));
    show("sendmsg_three_buffers", sendmsg(fd, &m3, 0));
    show("sendmsg_three_buffers_nosignal", sendmsg(fd, &m3, MSG_NOSIGNAL));
    show("sendto_with_address", sendto(fd, buf, sizeof buf, 0, (struct sockaddr *)&sa, sizeof sa));
    show("sendmsg_three_buffers_more", sendmsg(fd, &m3, MSG_MORE));
    /* A harmless control message (TCP ignores IP-level ones). */
    char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
    struct msghdr mc = m3;
    mc.msg_control = cbuf;
    mc.msg_controllen = sizeof cbuf;
    struct cmsghdr *h = CMSG_FIRSTHDR(&mc);
    h->cmsg_level = IPPROTO_IP;
    h->cmsg_type = IP_TOS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    int tos = 0;
    memcpy(CMSG_DATA(h), &tos, sizeof tos);
    show("sendmsg_three_buffers_control", sendmsg(fd, &mc, 0));
    struct mmsghdr mm[2] = { { .msg_hdr = m3 }, { .msg_hdr = m1 } };
    int n = sendmmsg(fd, mm, 2, 0);
    printf("sendmmsg=%d lens=%u,%u\n", n, mm[0].msg_len, mm[1].msg_len);
    if (n == 2) total += mm[0].msg_len + mm[1].msg_len;
    /* MSG_NOSIGNAL: EPIPE, and no SIGPIPE, on a shut-down socket. */
    shutdown(fd, SHUT_WR);
    show("after_shutdown_nosignal", sendmsg(fd, &m3, MSG_NOSIGNAL));
    printf("total=%ld\n", total);
    return 0;
}
