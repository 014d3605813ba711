/* connect_client.c - loop of socket() / connect() / close() on loopback.
 *
 * Build: gcc -O2 -o connect_client connect_client.c
 * Usage: connect_client PORT ITERATIONS [HOST]
 * Prints the mean nanoseconds per iteration (one number) on stdout.
 *
 * Each iteration is a full blocking TCP handshake with HOST:PORT (default 127.0.0.1)
 * (served by accept_server, which is NOT traced).
 *
 * TIME_WAIT: the client closes first, so every normal close would leave a
 * TIME_WAIT socket holding an ephemeral port for 60 s; a benchmark run makes
 * tens of thousands of connections per variant and round, which would
 * exhaust the ephemeral range (EADDRNOTAVAIL) or at least make port
 * selection slower and slower as the run goes on. We therefore set
 * SO_LINGER {1, 0}: close() sends RST and frees the port at once, so every
 * round does the same work. setsockopt is not a trapped call (neither for
 * appswitch nor for strace -e trace=connect), it costs the same in every
 * variant.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3 || atoi(argv[1]) <= 0 || atol(argv[2]) <= 0) {
        fprintf(stderr, "usage: %s PORT ITERATIONS [HOST]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[1]));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (argc > 3 && inet_pton(AF_INET, argv[3], &sa.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", argv[3]);
        return 2;
    }
    struct linger lg = { .l_onoff = 1, .l_linger = 0 }; /* close() => RST */

    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            fprintf(stderr, "socket (iteration %ld): %s\n", i, strerror(errno));
            return 1;
        }
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            fprintf(stderr, "connect (iteration %ld): %s\n", i, strerror(errno));
            return 1;
        }
        close(fd);
    }
    double t1 = now_ns();

    printf("%.2f\n", (t1 - t0) / (double)n);
    return 0;
}
