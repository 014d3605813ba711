/* PTRACE_TRACEME, then raise(SIGSTOP) as a debugger's child would. Under a
 * tracer already, TRACEME fails: print the error and exit 3 instead. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>

int main(void) {
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0) {
        printf("TRACEME %s\n", errno == EPERM ? "EPERM" : strerror(errno));
        return 3;
    }
    raise(SIGSTOP);
    printf("TRACEME ok\n");
    return 0;
}
