/* http_client.c - HTTP/1.0 without keep-alive: one blocking connect per request.
 *
 * Build: gcc -O2 -o http_client http_client.c
 * Usage: http_client HOST PORT REQUESTS CONCURRENCY
 * Forks CONCURRENCY workers that share REQUESTS requests; each request is
 * socket, connect (blocking, once: as curl, wget or python do, unlike ab,
 * which connects a second time to check), "GET / HTTP/1.0", read to EOF,
 * close. Prints requests per second (one number). Exits 1 if any request
 * fails or gets no "200" status line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int one(const struct sockaddr_in *sa)
{
    static const char req[] = "GET / HTTP/1.0\r\nHost: bench\r\n\r\n";
    char buf[4096];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0 ||
        write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        close(fd);
        return -1;
    }
    ssize_t n, total = 0;
    int ok = 0;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (total == 0 && n >= 12 && memcmp(buf + 9, "200", 3) == 0)
            ok = 1;
        total += n;
    }
    close(fd);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 5 || atoi(argv[2]) <= 0 || atol(argv[3]) <= 0 || atoi(argv[4]) <= 0) {
        fprintf(stderr, "usage: %s HOST PORT REQUESTS CONCURRENCY\n", argv[0]);
        return 2;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", argv[1]);
        return 2;
    }
    long n = atol(argv[3]);
    int conc = atoi(argv[4]);
    double t0 = now_s();
    for (int w = 0; w < conc; w++) {
        pid_t p = fork();
        if (p < 0) {
            perror("fork");
            return 1;
        }
        if (p == 0) {
            long mine = n / conc + (w < n % conc);
            for (long i = 0; i < mine; i++)
                if (one(&sa) < 0) {
                    fprintf(stderr, "request failed: %s\n", strerror(errno));
                    _exit(1);
                }
            _exit(0);
        }
    }
    int failed = 0, st;
    while (wait(&st) > 0)
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed = 1;
    double t1 = now_s();
    if (failed)
        return 1;
    printf("%.1f\n", (double)n / (t1 - t0));
    return 0;
}
