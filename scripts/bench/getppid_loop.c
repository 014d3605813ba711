/* getppid_loop.c - tight loop of a cheap, non-network syscall.
 *
 * Build: gcc -O2 -static -o getppid_loop getppid_loop.c
 * Usage: getppid_loop ITERATIONS
 * Prints the mean nanoseconds per getppid() call (one number) on stdout.
 *
 * Under appswitch (and strace --seccomp-bpf -e trace=%network) getppid is
 * not trapped, so the only cost left is the seccomp-BPF filter evaluation
 * on every syscall: the ratio traced/untraced should be ~1.
 * Static linking makes sure no dynamic loader or vDSO trickery is involved
 * and that the loop is exactly one real syscall per iteration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    if (n <= 0) {
        fprintf(stderr, "usage: %s ITERATIONS\n", argv[0]);
        return 2;
    }
    volatile long sink = 0; /* keeps the calls from being optimised away */

    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        sink += syscall(SYS_getppid); /* raw syscall: never cached by libc */
    double t1 = now_ns();

    (void)sink;
    printf("%.2f\n", (t1 - t0) / (double)n);
    return 0;
}
