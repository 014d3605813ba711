/* thread_connect PORT ROUNDS
 * Each round: the main thread creates a socket, a second thread connects it
 * to 127.0.0.1:PORT, a third thread reads the peer's first line. Prints one
 * "round N: DATA" line per round and exits 0 if all rounds succeeded. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int port, fd, status;
static char line[64];

static void *connector(void *arg) {
    (void)arg;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    status = connect(fd, (struct sockaddr *)&sa, sizeof sa) ? errno : 0;
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    ssize_t n = read(fd, line, sizeof line - 1);
    line[n > 0 ? n : 0] = 0;
    line[strcspn(line, "\r\n")] = 0;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: thread_connect PORT ROUNDS\n"); return 2; }
    port = atoi(argv[1]);
    int rounds = atoi(argv[2]), failed = 0;
    for (int i = 0; i < rounds; i++) {
        pthread_t c, r;
        fd = socket(AF_INET, SOCK_STREAM, 0);
        pthread_create(&c, NULL, connector, NULL);
        pthread_join(c, NULL);
        if (status) { printf("round %d: connect failed: %s\n", i, strerror(status)); failed++; close(fd); continue; }
        pthread_create(&r, NULL, reader, NULL);
        pthread_join(r, NULL);
        printf("round %d: %s\n", i, line);
        close(fd);
    }
    return failed ? 1 : 0;
}
