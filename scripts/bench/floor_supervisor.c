/* floor_supervisor CMD [ARGS...]
 * The least a supervisor can do per connect() and still carry the call out
 * itself (as appswitch must for a connect it routes: the program's own call
 * may not run, or the kernel would read the address again): runs CMD with a
 * filter that sends connect() alone to this process, which for each one
 *   RECV, reads the address (process_vm_readv), borrows the socket
 *   (pidfd_getfd), looks at it (fstat, F_GETFL), ID_VALID, connects its
 *   copy to the address the program gave, closes the copy, SEND,
 * with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP and epoll, as appswitch. Nothing
 * is decided, recorded or routed. A blocking socket's connect is let run
 * (CONTINUE) so that this process never waits; ab connects non-blocking.
 * scripts/bench/short_bench.py runs ab under it beside appswitch: the
 * ratio of appswitch to this floor is what appswitch's own work costs;
 * the ratio of this floor to untraced is the mechanism's (two context
 * switches and these nine system calls per trapped call).
 * Exit status: CMD's (128+N when it died of signal N); 2 on a setup error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "listener_pass.h"

/* pidfds of the trapping processes, by pid (a small direct-mapped cache;
 * a collision only costs a pidfd_open). */
#define SLOTS 64
static int slot_pid[SLOTS], slot_fd[SLOTS];

static int pidfd_of(pid_t pid) {
    int h = pid % SLOTS;
    if (slot_pid[h] != pid || slot_fd[h] <= 0) {
        if (slot_fd[h] > 0) close(slot_fd[h]);
        slot_fd[h] = syscall(SYS_pidfd_open, pid, 0);
        slot_pid[h] = pid;
    }
    return slot_fd[h];
}

/* The answer to one trapped connect (resp->id set). */
static void emulate(int l, struct seccomp_notif *n, struct seccomp_notif_resp *r) {
    char addr[128];
    size_t len = (size_t)(unsigned)n->data.args[2];
    if (len > sizeof addr) len = sizeof addr;
    struct iovec lo = {addr, len}, re = {(void *)(uintptr_t)n->data.args[1], len};
    int pidfd = pidfd_of(n->pid);
    int fd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, (int)n->data.args[0], 0);
    struct stat st;
    int fl = fd < 0 ? -1 : fcntl(fd, F_GETFL);
    if (fd < 0 || fstat(fd, &st) || fl < 0 || !(fl & O_NONBLOCK) ||
        process_vm_readv(n->pid, &lo, 1, &re, 1, 0) != (ssize_t)len) {
        /* Not one this floor carries out: the program's own call runs. */
        r->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else if (ioctl(l, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id) == 0) {
        r->error = connect(fd, (struct sockaddr *)addr, len) ? -errno : 0;
    }
    if (fd >= 0) close(fd);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: floor_supervisor CMD [ARGS...]\n");
        return 2;
    }
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp)) return perror("socketpair"), 2;
    pid_t child = fork();
    if (child < 0) return perror("fork"), 2;
    if (child == 0) {
        if (filter_one_call(SYS_connect, sp[1])) _exit(2);
        close(sp[0]);
        close(sp[1]);
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    close(sp[1]);
    int l = recv_fd(sp[0]);
    if (l < 0) return fprintf(stderr, "floor_supervisor: no listener from the child\n"), 2;
    if (ioctl(l, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (unsigned long)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP))
        perror("floor_supervisor: SYNC_WAKE_UP (the floor is then the ordinary wake-up's)");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev)) return perror("epoll"), 2;
    for (;;) {
        struct epoll_event e;
        int k = epoll_wait(ep, &e, 1, -1);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return perror("epoll_wait"), 2;
        if (!(e.events & EPOLLIN)) break; /* hang-up: the filter has no users left */
        struct seccomp_notif n;
        memset(&n, 0, sizeof n);
        if (ioctl(l, SECCOMP_IOCTL_NOTIF_RECV, &n)) {
            if (errno == ENOENT || errno == EINTR) continue;
            return perror("NOTIF_RECV"), 2;
        }
        struct seccomp_notif_resp r = {.id = n.id};
        emulate(l, &n, &r);
        if (ioctl(l, SECCOMP_IOCTL_NOTIF_SEND, &r) && errno != ENOENT) return perror("NOTIF_SEND"), 2;
    }
    int status;
    if (waitpid(child, &status, 0) < 0) return perror("waitpid"), 2;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
