/* attach_target N: N threads, each looping connect() to 127.0.0.1:1 (closed:
 * ECONNREFUSED at once) with a 1 ms pause, as a busy program to attach to
 * (scripts/bench/attach_bench.py). Prints "ready" once all threads run, then
 * runs until killed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void *loop(void *arg) {
    (void)arg;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timespec pause = {0, 1000000};
    for (;;) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s >= 0) {
            connect(s, (struct sockaddr *)&a, sizeof a);
            close(s);
        }
        nanosleep(&pause, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, loop, NULL)) return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
