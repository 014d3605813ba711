/* h_app PORT [EXEC-PATH] | h_app direct PORT
 * Connects to 127.0.0.1:PORT after renaming a thread, to see whether app=
 * rules follow a thread's name (they must follow the program's):
 *   thread_allowed  a worker thread renames itself "curl", then connects
 *   thread_denied   a worker thread renames itself "nc", then connects
 *   fork_thread     a worker renamed "curl" forks; the child connects
 *   main            the main thread renames itself "curl" (PR_SET_NAME), connects
 *   fork_main       then forks; the child connects
 *   exec            (with EXEC-PATH) a child execs EXEC-PATH, which runs
 *                   `h_app direct PORT` under the name the path gives it
 * Prints NAME=ok or NAME=ERRNO-NAME, one per line. `direct` connects once
 * and exits with 0 or the errno. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned short port;

/* 0, or the errno of a connect to 127.0.0.1:port. */
static int try_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int e = connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? errno : 0;
    close(fd);
    return e;
}

static void report(const char *what, int e) {
    const char *n = e ? strerrorname_np(e) : "ok";
    printf("%s=%s\n", what, n ? n : "E?");
}

/* Fork; the child connects and exits with the result: that result. */
static int forked_connect(void) {
    pid_t c = fork();
    if (c < 0) return errno;
    if (c == 0) _exit(try_connect());
    int st = 0;
    if (waitpid(c, &st, 0) < 0 || !WIFEXITED(st)) return EINTR;
    return WEXITSTATUS(st);
}

struct job { const char *name; int fork; int result; };

static void *worker(void *arg) {
    struct job *j = arg;
    pthread_setname_np(pthread_self(), j->name);
    j->result = j->fork ? forked_connect() : try_connect();
    return NULL;
}

static void in_thread(const char *what, const char *name, int fork) {
    struct job j = {name, fork, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, worker, &j) != 0) { printf("%s=pthread\n", what); return; }
    pthread_join(t, NULL);
    report(what, j.result);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "direct") == 0) {
        port = (unsigned short)atoi(argv[2]);
        return try_connect();
    }
    if (argc < 2) { fprintf(stderr, "usage: h_app PORT [EXEC-PATH]\n"); return 2; }
    port = (unsigned short)atoi(argv[1]);
    in_thread("thread_allowed", "curl", 0);
    in_thread("thread_denied", "nc", 0);
    in_thread("fork_thread", "curl", 1);
    prctl(PR_SET_NAME, "curl", 0, 0, 0);
    report("main", try_connect());
    report("fork_main", forked_connect());
    if (argc == 3) {
        pid_t c = fork();
        if (c == 0) {
            execl(argv[2], argv[2], "direct", argv[1], (char *)NULL);
            _exit(127);
        }
        int st = 0;
        waitpid(c, &st, 0);
        report("exec", WIFEXITED(st) ? WEXITSTATUS(st) : EINTR);
    }
    return 0;
}
