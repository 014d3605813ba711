/* A program under `run` tries to take the supervisor's listener (its parent's fd) and answer itself. */
#include "common.h"
#include <sys/ptrace.h>
int main(void) {
    pid_t sup = getppid();
    int pidfd = pidfd_open(sup, 0);
    int got = -1;
    for (int fd = 3; fd < 16 && got < 0; fd++) {
        int c = pidfd_getfd(pidfd, fd, 0);
        if (c < 0) { if (fd == 3) printf("stealer: pidfd_getfd(supervisor, 3) -> %s\n", strerror(errno)); continue; }
        char p[64], l[128]; snprintf(p, sizeof p, "/proc/self/fd/%d", c);
        ssize_t n = readlink(p, l, sizeof l - 1); l[n > 0 ? n : 0] = 0;
        if (strstr(l, "seccomp")) { got = c; printf("stealer: took the supervisor's listener (%s)\n", l); }
        else close(c);
    }
    long r = ptrace(PTRACE_ATTACH, sup, 0, 0);
    printf("stealer: PTRACE_ATTACH(supervisor) -> %s\n", r ? strerror(errno) : "attached");
    if (r == 0) { int st; waitpid(sup, &st, __WALL); ptrace(PTRACE_DETACH, sup, 0, 0); }
    return 0;
}
