/* h_clone_escape MODE PORT ATTEMPTS
 * Class 2 probe: try to create a child the tracer does not see, then have
 * that child connect to 127.0.0.1:PORT (denied by the test's policy).
 * MODE:
 *   clone3-ro      clone3 with CLONE_UNTRACED, clone_args in read-only memory
 *   clone3-secret  clone_args in memfd_secret memory (falls back to clone3-ro
 *                  when memfd_secret is unavailable)
 *   clone3-race    clone_args written by a sibling thread that keeps setting
 *                  CLONE_UNTRACED in the flags word
 *   clone-untraced raw clone(CLONE_UNTRACED|SIGCHLD)
 * Each of ATTEMPTS rounds creates a child (if the call succeeds) that reports
 * its TracerPid and tries one connect, through a pipe. Prints:
 *   created=N untraced=N connected=N enosys=N failed=N
 * Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int port;
static volatile struct clone_args *shared;
static volatile int stop;

static int tracer_pid(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int t = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "TracerPid:", 10)) t = atoi(line + 10);
    if (f) fclose(f);
    return t;
}

/* In the child: report "T C" (tracer pid, connected 0/1) on fd w. */
static void child(int w) {
    int t = tracer_pid();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int c = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    int msg[2] = { t, c };
    write(w, msg, sizeof msg);
    _exit(0);
}

static void *racer(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        shared->flags = CLONE_UNTRACED;
        shared->flags = 0;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: h_clone_escape MODE PORT ATTEMPTS\n"); return 2; }
    const char *mode = argv[1];
    port = atoi(argv[2]);
    long attempts = atol(argv[3]);
    long created = 0, untraced = 0, connected = 0, enosys = 0, failed = 0;
    struct clone_args *args = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!strcmp(mode, "clone3-secret")) {
        int sfd = syscall(SYS_memfd_secret, 0);
        if (sfd >= 0 && ftruncate(sfd, 4096) == 0) {
            void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
            if (m != MAP_FAILED) args = m;
        } else {
            printf("memfd_secret=%s\n", strerrorname_np(errno));
        }
    }
    memset(args, 0, sizeof *args);
    args->flags = CLONE_UNTRACED;
    args->exit_signal = SIGCHLD;
    if (!strcmp(mode, "clone3-ro")) mprotect(args, 4096, PROT_READ);
    pthread_t t;
    if (!strcmp(mode, "clone3-race")) {
        shared = args;
        pthread_create(&t, NULL, racer, NULL);
    }
    for (long i = 0; i < attempts; i++) {
        int p[2];
        if (pipe(p)) { failed++; continue; }
        long pid;
        if (!strncmp(mode, "clone3", 6)) {
            pid = syscall(SYS_clone3, args, sizeof *args);
        } else if (!strcmp(mode, "clone-untraced")) {
            pid = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
        } else {
            fprintf(stderr, "bad mode\n");
            return 2;
        }
        if (pid == 0) {
            close(p[0]);
            child(p[1]);
        }
        close(p[1]);
        if (pid < 0) {
            if (errno == ENOSYS) enosys++; else failed++;
            close(p[0]);
            continue;
        }
        created++;
        int msg[2] = { -1, 0 };
        if (read(p[0], msg, sizeof msg) == sizeof msg) {
            if (msg[0] <= 0) untraced++;
            connected += msg[1];
        }
        close(p[0]);
        waitpid(pid, NULL, 0);
    }
    stop = 1;
    printf("created=%ld untraced=%ld connected=%ld enosys=%ld failed=%ld\n",
           created, untraced, connected, enosys, failed);
    return 0;
}
