/* orphan_thread PORT
 * The main thread exits with pthread_exit while a worker thread lives on;
 * the worker then connects to 127.0.0.1:PORT and prints result=ok or
 * errno=NAME. (A tracer that borrows sockets through the thread-group
 * leader can no longer see them once the leader is gone.) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int port;

static void *worker(void *arg) {
    (void)arg;
    usleep(100000); /* let the leader exit first */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) printf("errno=%s\n", strerrorname_np(errno));
    else printf("result=ok\n");
    fflush(stdout);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: orphan_thread PORT\n"); return 2; }
    port = atoi(argv[1]);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_exit(NULL);
}
