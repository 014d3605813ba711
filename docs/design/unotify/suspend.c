/* A (root) program under the filter tries to suspend seccomp in a child it traces. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
#ifndef PTRACE_O_SUSPEND_SECCOMP
#define PTRACE_O_SUSPEND_SECCOMP (1 << 21)
#endif
int main(void) {
    pid_t c = fork();
    if (c == 0) { pause(); _exit(0); }
    long r = ptrace(PTRACE_SEIZE, c, 0, PTRACE_O_SUSPEND_SECCOMP);
    printf("suspend: PTRACE_SEIZE(child, PTRACE_O_SUSPEND_SECCOMP) as uid %d -> %s\n", getuid(), r ? strerror(errno) : "ok (filter suspended!)");
    kill(c, SIGKILL); waitpid(c, NULL, 0);
    return 0;
}
