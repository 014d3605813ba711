/* Forks a child that waits, then PTRACE_SEIZEs and PTRACE_ATTACHes it:
 * prints "SEIZE <result>" and "ATTACH <result>", kills the child, exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *res(long r) { return r == 0 ? "ok" : errno == EPERM ? "EPERM" : strerror(errno); }

int main(void) {
    pid_t pid = fork();
    if (pid < 0)
        return 3;
    if (pid == 0) {
        sleep(20);
        _exit(0);
    }
    long r = ptrace(PTRACE_SEIZE, pid, NULL, NULL);
    printf("SEIZE %s\n", res(r));
    r = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
    printf("ATTACH %s\n", res(r));
    fflush(stdout);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, __WALL);
    return 0;
}
