/* notif_roundtrip [N [ROUNDS]]
 * The floor of a trapped call under seccomp user notification: a child
 * makes N getppid() calls that its filter sends to a supervisor (its
 * parent), which answers each at once (RECV then SEND, nothing else), as
 * appswitch's supervisor does around its own work. Measured three ways:
 *   sync   SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6), the supervisor
 *          waiting in epoll_wait (appswitch's mode for one trapping thread)
 *   sync-recv   the same, waiting in SECCOMP_IOCTL_NOTIF_RECV itself
 *   ordinary    no SYNC_WAKE_UP: the supervisor woken on any CPU (appswitch's
 *          mode when several threads trap at once)
 * The modes run interleaved, ROUNDS times (default 5). Prints per mode the
 * median microseconds per trapped call (wall clock) and every round's.
 * Whatever appswitch adds per trapped call beyond these is its own work. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "listener_pass.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* One run: microseconds per trapped call; -1 on failure (said on
 * stderr), -2 when the kernel lacks SYNC_WAKE_UP. */
static double measure(long n, int sync, int epoll) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp)) return perror("socketpair"), -1.0;
    pid_t child = fork();
    if (child < 0) return perror("fork"), -1;
    if (child == 0) {
        close(sp[1]);
        if (filter_one_call(SYS_getppid, sp[0])) _exit(2);
        char go;
        if (read(sp[0], &go, 1) != 1) _exit(2);
        double t0 = now_us();
        for (long i = 0; i < n; i++) syscall(SYS_getppid);
        double us = (now_us() - t0) / n;
        if (write(sp[0], &us, sizeof us) != sizeof us) _exit(2);
        _exit(0);
    }
    close(sp[0]);
    int l = recv_fd(sp[1]);
    if (l < 0) return fprintf(stderr, "no listener from the child\n"), -1;
    if (sync && ioctl(l, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (unsigned long)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)) {
        close(l);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        close(sp[1]);
        return -2;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev)) return perror("epoll"), -1;
    if (write(sp[1], "g", 1) != 1) return perror("write"), -1;
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    for (long i = 0; i < n; i++) {
        struct epoll_event e;
        if (epoll && epoll_wait(ep, &e, 1, 10000) != 1) return fprintf(stderr, "epoll_wait timed out\n"), -1;
        memset(&req, 0, sizeof req);
        if (ioctl(l, SECCOMP_IOCTL_NOTIF_RECV, &req)) return perror("NOTIF_RECV"), -1;
        resp = (struct seccomp_notif_resp){.id = req.id, .val = 1};
        if (ioctl(l, SECCOMP_IOCTL_NOTIF_SEND, &resp)) return perror("NOTIF_SEND"), -1;
    }
    double us = 0;
    if (read(sp[1], &us, sizeof us) != sizeof us) return fprintf(stderr, "no result\n"), -1;
    waitpid(child, NULL, 0);
    close(l);
    close(ep);
    close(sp[1]);
    return us;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (n <= 0 || rounds <= 0 || rounds > 99) return fprintf(stderr, "usage: notif_roundtrip [N [ROUNDS]]\n"), 2;
    static const struct { const char *name; int sync, epoll; } modes[] = {
        {"sync", 1, 1}, {"sync-recv", 1, 0}, {"ordinary", 0, 1}};
    double us[3][99];
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < 3; m++)
            if ((us[m][r] = measure(n, modes[m].sync, modes[m].epoll)) == -1) return 1;
    for (int m = 0; m < 3; m++) {
        if (us[m][0] == -2) {
            printf("%-10s not supported by this kernel (SYNC_WAKE_UP is Linux 6.6)\n", modes[m].name);
            continue;
        }
        double sorted[99];
        memcpy(sorted, us[m], sizeof(double) * rounds);
        qsort(sorted, rounds, sizeof(double), cmp);
        printf("%-10s %.2f us per trapped call (median of %d:", modes[m].name, sorted[rounds / 2], rounds);
        for (int r = 0; r < rounds; r++) printf(" %.2f", us[m][r]);
        printf(")\n");
    }
    return 0;
}
