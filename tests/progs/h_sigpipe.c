/* h_sigpipe MODE PORT
 * Class 15 probe: SIGPIPE as untraced. Connects to 127.0.0.1:PORT, shuts
 * its own side for writing, then:
 *   one      sendmsg (one buffer, no MSG_NOSIGNAL): dies of SIGPIPE
 *   three    sendmsg (three buffers, no MSG_NOSIGNAL): dies of SIGPIPE
 *   blocked  with SIGPIPE blocked, sendmsg (three buffers, MSG_NOSIGNAL):
 *            EPIPE and no SIGPIPE pending; then unblocks it and write()s:
 *            dies of SIGPIPE
 * Prints each step as it goes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[3000];

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: h_sigpipe MODE PORT\n"); return 2; }
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("connect"); return 2; }
    shutdown(fd, SHUT_WR);
    struct iovec one = { buf, sizeof buf };
    struct iovec three[3] = { { buf, 1000 }, { buf + 1000, 1000 }, { buf + 2000, 1000 } };
    struct msghdr m1 = { .msg_iov = &one, .msg_iovlen = 1 };
    struct msghdr m3 = { .msg_iov = three, .msg_iovlen = 3 };
    if (!strcmp(argv[1], "one")) {
        printf("sendmsg=%zd\n", sendmsg(fd, &m1, 0));
    } else if (!strcmp(argv[1], "three")) {
        printf("sendmsg=%zd\n", sendmsg(fd, &m3, 0));
    } else if (!strcmp(argv[1], "blocked")) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGPIPE);
        sigprocmask(SIG_BLOCK, &s, NULL);
        ssize_t r = sendmsg(fd, &m3, MSG_NOSIGNAL);
        printf("sendmsg=%s\n", r < 0 ? strerrorname_np(errno) : "sent");
        sigset_t p;
        sigpending(&p);
        printf("pending=%d\n", sigismember(&p, SIGPIPE));
        sigprocmask(SIG_UNBLOCK, &s, NULL);
        printf("write=%zd\n", write(fd, buf, 10));
    }
    printf("alive\n");
    return 0;
}
