/* h_many PORT PROCS
 * Class 10 probe: PROCS live processes at once, each with a second thread,
 * each connecting to 127.0.0.1:PORT (allowed) once before and once after all
 * of them exist. Every child also checks that its RLIMIT_NOFILE is the
 * parent's. Prints: ok=N emfile=N other=N limit_differs=N nofile=SOFT/HARD
 * Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int port;

/* 0 ok, 1 EMFILE/ENFILE, 2 other */
static int one_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return errno == EMFILE || errno == ENFILE ? 1 : 2;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0
          : (errno == EMFILE || errno == ENFILE ? 1 : 2);
    close(fd);
    return r;
}

static int results[2];
static void *thread_connect(void *arg) {
    (void)arg;
    results[1] = one_connect();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: h_many PORT PROCS\n"); return 2; }
    port = atoi(argv[1]);
    int procs = atoi(argv[2]);
    struct rlimit mine;
    getrlimit(RLIMIT_NOFILE, &mine);
    int go[2], back[2];
    if (pipe(go) || pipe(back)) return 2;
    pid_t *pids = calloc(procs, sizeof *pids);
    for (int i = 0; i < procs; i++) {
        pid_t p = fork();
        if (p == 0) {
            close(go[1]);
            close(back[0]);
            struct rlimit rl;
            getrlimit(RLIMIT_NOFILE, &rl);
            int differs = rl.rlim_cur != mine.rlim_cur || rl.rlim_max != mine.rlim_max;
            int before = one_connect();
            char b;
            /* Wait until all exist (EOF when the parent closes its end). */
            while (read(go[0], &b, 1) > 0) {}
            pthread_t t;
            pthread_create(&t, NULL, thread_connect, NULL);
            pthread_join(t, NULL);
            unsigned char msg[3] = { before, results[1], differs };
            write(back[1], msg, 3);
            _exit(0);
        }
        pids[i] = p;
    }
    close(go[0]);
    close(back[1]);
    close(go[1]); /* all exist: go */
    long ok = 0, emfile = 0, other = 0, differs = 0;
    unsigned char msg[3];
    while (read(back[0], msg, 3) == 3) {
        for (int k = 0; k < 2; k++) {
            if (msg[k] == 0) ok++;
            else if (msg[k] == 1) emfile++;
            else other++;
        }
        differs += msg[2];
    }
    for (int i = 0; i < procs; i++) waitpid(pids[i], NULL, 0);
    printf("ok=%ld emfile=%ld other=%ld limit_differs=%ld nofile=%lu/%lu\n",
           ok, emfile, other, differs, (unsigned long)mine.rlim_cur, (unsigned long)mine.rlim_max);
    return 0;
}
