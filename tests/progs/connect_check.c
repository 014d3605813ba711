/* connect_check [-n] [-t] [-w SECS] [-a SECS] HOST PORT
 * Connects a TCP socket (blocking, or non-blocking with -n) to HOST:PORT and
 * prints what happened, one key=value per line:
 *   result=ok|errno=NAME   the connect outcome
 *   buffer=unchanged|CHANGED   whether our sockaddr buffer is as we wrote it
 *   data=...               the first bytes the peer sent
 * With -t the connect goes through syscall(SYS_connect) (a raw syscall).
 * -w sets SO_SNDTIMEO (a blocking connect then gives up with EINPROGRESS);
 * -a arms an alarm whose handler (no SA_RESTART) interrupts the connect. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <signal.h>
#include <unistd.h>

static void on_alarm(int s) { (void)s; }

int main(int argc, char **argv) {
    int nonblock = 0, raw = 0, i = 1, wait_s = 0, alarm_s = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-n")) nonblock = 1;
        else if (!strcmp(argv[i], "-t")) raw = 1;
        else if (!strcmp(argv[i], "-w") && i + 1 < argc) wait_s = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-a") && i + 1 < argc) alarm_s = atoi(argv[++i]);
    }
    if (argc - i != 2) { fprintf(stderr, "usage: connect_check [-n] [-t] HOST PORT\n"); return 2; }
    struct sockaddr_in sa, copy;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(atoi(argv[i + 1]));
    if (inet_pton(AF_INET, argv[i], &sa.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }
    copy = sa;
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) { perror("socket"); return 2; }
    if (wait_s) {
        struct timeval tv = { .tv_sec = wait_s };
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (alarm_s) {
        struct sigaction act = { .sa_handler = on_alarm };
        sigaction(SIGALRM, &act, NULL);
        alarm(alarm_s);
    }
    int r = raw ? (int)syscall(SYS_connect, fd, &sa, sizeof sa)
                : connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = r < 0 ? errno : 0;
    if (nonblock && err == EINPROGRESS) {
        printf("nonblocking=EINPROGRESS\n");
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (poll(&p, 1, 10000) != 1) { printf("errno=TIMEOUT\n"); return 1; }
        socklen_t l = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
    }
    if (err == EINPROGRESS && !nonblock) printf("nonblocking=no\n");
    if (err) printf("errno=%s\n", strerrorname_np(err));
    else printf("result=ok\n");
    printf("buffer=%s\n", memcmp(&sa, &copy, sizeof sa) ? "CHANGED" : "unchanged");
    if (!err) {
        char buf[64];
        struct pollfd p = { .fd = fd, .events = POLLIN };
        poll(&p, 1, 10000);
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n < 0) n = 0;
        buf[n] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        printf("data=%s\n", buf);
    }
    close(fd);
    return 0;
}
