/* seccomp_allow PROG [ARGS...]
 * Control for the benchmark: installs a one-instruction seccomp filter that
 * allows everything, then execs PROG. No tracer. What PROG loses here is the
 * cost of having any seccomp filter at all (the kernel's slow syscall-entry
 * path), which no seccomp-based tracer can go below. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: seccomp_allow PROG [ARGS...]\n"); return 2; }
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = { .len = 1, .filter = &allow };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
        perror("seccomp");
        return 2;
    }
    execv(argv[1], argv + 1);
    perror("execv");
    return 127;
}
