/* fastopen HOST PORT
 * Client TCP Fast Open: on a fresh blocking IPv4 TCP socket (never connected)
 * calls sendto(fd, "hello", 5, MSG_FASTOPEN, HOST:PORT), which connects and
 * sends in one syscall (needs the client bit of net.ipv4.tcp_fastopen, set by
 * the default value 1). Prints, one key=value per line:
 *   result=N      sendto's return value (bytes queued), then
 *   data=LINE     the first line the peer replied (waits at most 5 s; empty
 *                 if nothing came)
 * or, when sendto fails:
 *   errno=NAME
 * Exits 0; usage errors exit 2. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: fastopen HOST PORT\n"); return 2; }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { perror("socket"); return 2; }

    ssize_t r = sendto(fd, "hello", 5, MSG_FASTOPEN, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0) {
        printf("errno=%s\n", strerrorname_np(errno));
        fflush(stdout);
        close(fd);
        return 0;
    }
    printf("result=%zd\n", r);

    /* Read the peer's first line: bounded by 5 s in total and by the buffer. */
    char buf[256];
    size_t got = 0;
    for (int i = 0; i < 50 && got < sizeof buf - 1; i++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0) break;
        got += n;
        if (memchr(buf, '\n', got)) break;
    }
    buf[got] = 0;
    buf[strcspn(buf, "\r\n")] = 0;
    printf("data=%s\n", buf);
    fflush(stdout);
    close(fd);
    return 0;
}
