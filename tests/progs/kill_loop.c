/* kill_loop ALLOWED_PORT DENIED_PORT COUNT INTERVAL_MS
 * Issue 14 probe for a trace killed under its program: COUNT times, every
 * INTERVAL_MS, a blocking TCP connect to 127.0.0.1:ALLOWED_PORT and one to
 * 127.0.0.1:DENIED_PORT, each on a fresh socket. One line per connect:
 *   "NS allowed|denied ok|ERRNAME"
 * NS being CLOCK_MONOTONIC in nanoseconds just before the call (comparable
 * with the test's own clock). Stops early (exit 3) after 60 s. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void one(int port, const char *name) {
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    long long t = now_ns();
    int err = connect(fd, (struct sockaddr *)&sa, sizeof sa) ? errno : 0;
    printf("%lld %s %s\n", t, name, err ? strerrorname_np(err) : "ok");
    fflush(stdout);
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: kill_loop ALLOWED_PORT DENIED_PORT COUNT INTERVAL_MS\n");
        return 2;
    }
    int allowed = atoi(argv[1]), denied = atoi(argv[2]), count = atoi(argv[3]), ms = atoi(argv[4]);
    long long end = now_ns() + 60000000000LL;
    for (int i = 0; i < count; i++) {
        if (now_ns() > end) return 3;
        one(allowed, "allowed");
        one(denied, "denied");
        usleep(ms * 1000);
    }
    return 0;
}
