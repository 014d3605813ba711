/* connect_loop PORT COUNT INTERVAL_MS
 * COUNT times, every INTERVAL_MS: a blocking TCP connect to 127.0.0.1:PORT,
 * then close. Prints one line per attempt: "NS ok" or "NS ERRNAME", NS being
 * CLOCK_MONOTONIC in nanoseconds (comparable with the test's own clock).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: connect_loop PORT COUNT INTERVAL_MS\n"); return 2; }
    int port = atoi(argv[1]), count = atoi(argv[2]), ms = atoi(argv[3]);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        int err = r ? errno : 0;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        printf("%lld %s\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec, err ? strerrorname_np(err) : "ok");
        fflush(stdout);
        close(fd);
        usleep(ms * 1000);
    }
    return 0;
}
