/* h_leader_exec start|after OK_PORT DENIED_PORT
 * Class 14 probe. start: the main thread exits (pthread_exit) while a second
 * thread waits for the leader to be a zombie, then execs this program with
 * "after". after: connects to OK_PORT (reads the banner), to DENIED_PORT,
 * binds+listens on an ephemeral port and accepts one connection of its own,
 * and prints one line per step. Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char **args;
static char self[4096];

static char leader_state(void) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", getpid());
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] && p[2] ? p[2] : '?';
}

static void *execer(void *arg) {
    (void)arg;
    for (int i = 0; i < 500 && leader_state() != 'Z'; i++) usleep(2000);
    char *argv[] = { self, "after", args[2], args[3], NULL };
    execv(self, argv);
    perror("execv");
    _exit(3);
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: h_leader_exec start|after OK_PORT DENIED_PORT\n"); return 2; }
    args = argv;
    if (!strcmp(argv[1], "start")) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) return 2;
        self[n] = 0;
        pthread_t t;
        pthread_create(&t, NULL, execer, NULL);
        pthread_exit(NULL);
    }
    int fd = dial(atoi(argv[2]));
    if (fd < 0) printf("ok_port=%s\n", strerrorname_np(errno));
    else {
        char buf[64];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        printf("ok_port=%s", buf);
        close(fd);
    }
    fd = dial(atoi(argv[3]));
    printf("denied_port=%s\n", fd < 0 ? strerrorname_np(errno) : "OK");
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t sl = sizeof sa;
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 4) || getsockname(l, (struct sockaddr *)&sa, &sl)) {
        printf("listen=%s\n", strerrorname_np(errno));
        return 0;
    }
    int c = dial(ntohs(sa.sin_port));
    int a = accept(l, NULL, NULL);
    printf("self_connect=%s accept=%s\n", c < 0 ? strerrorname_np(errno) : "OK", a < 0 ? strerrorname_np(errno) : "OK");
    return 0;
}
