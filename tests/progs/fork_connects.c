/* fork_connects PORT N SECS: N processes each connect to 127.0.0.1:PORT
 * in a loop (a fresh socket each time) until one deadline SECS seconds
 * after the first fork (CLOCK_MONOTONIC: the same window for all; time(0)
 * ends a window anywhere in its last second), then report how many
 * connects they made; the parent prints "min M max X" and exits 0. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4)
        return 2;
    int port = atoi(argv[1]), n = atoi(argv[2]), secs = atoi(argv[3]);
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += secs;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0)
            return 1;
        if (p == 0) {
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            long k = 0;
            for (;;) {
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
                    break;
                int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                connect(s, (struct sockaddr *)&sa, sizeof sa);
                close(s);
                k++;
            }
            if (write(fds[1], &k, sizeof k) != sizeof k)
                _exit(1);
            _exit(0);
        }
    }
    long mn = -1, mx = 0;
    for (int i = 0; i < n; i++) {
        long k;
        if (read(fds[0], &k, sizeof k) != sizeof k)
            return 1;
        if (mn < 0 || k < mn)
            mn = k;
        if (k > mx)
            mx = k;
    }
    while (wait(0) > 0) {
    }
    printf("min %ld max %ld\n", mn, mx);
    return 0;
}
