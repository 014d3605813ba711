/* Runtime feature detection for seccomp user notification, and API facts. */
#include "common.h"
#include <time.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("ioctl numbers: RECV=%#lx SEND=%#lx ID_VALID=%#lx ADDFD=%#lx SET_FLAGS=%#lx\n",
           (unsigned long)SECCOMP_IOCTL_NOTIF_RECV, (unsigned long)SECCOMP_IOCTL_NOTIF_SEND,
           (unsigned long)SECCOMP_IOCTL_NOTIF_ID_VALID, (unsigned long)SECCOMP_IOCTL_NOTIF_ADDFD,
           (unsigned long)SECCOMP_IOCTL_NOTIF_SET_FLAGS);
    struct seccomp_notif_sizes sz;
    int r = seccomp(SECCOMP_GET_NOTIF_SIZES, 0, &sz);
    printf("GET_NOTIF_SIZES: r=%d notif=%u resp=%u data=%u (sizeof: %zu %zu %zu)\n", r,
           sz.seccomp_notif, sz.seccomp_notif_resp, sz.seccomp_data,
           sizeof(struct seccomp_notif), sizeof(struct seccomp_notif_resp), sizeof(struct seccomp_data));
    uint32_t act = SECCOMP_RET_USER_NOTIF;
    r = seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &act);
    printf("GET_ACTION_AVAIL(USER_NOTIF): r=%d\n", r);

    /* Everything else in a forked child: a filter can never be removed. */
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        int fd;
        fd = install_notify_filter(SYS_getppid, SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_TSYNC);
        printf("child: NEW_LISTENER|TSYNC -> %d (%s)\n", fd, fd < 0 ? strerror(errno) : "ok");
        fd = install_notify_filter(SYS_getppid, SECCOMP_FILTER_FLAG_NEW_LISTENER | (1UL << 7));
        printf("child: NEW_LISTENER|unknown flag bit7 -> %d (%s)\n", fd, fd < 0 ? strerror(errno) : "ok");
        fd = install_notify_filter(SYS_getppid,
                SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV);
        printf("child: NEW_LISTENER|WAIT_KILLABLE_RECV -> fd %d (%s)\n", fd, fd < 0 ? strerror(errno) : "ok");
        int fdfl = fcntl(fd, F_GETFD), fl = fcntl(fd, F_GETFL);
        printf("child: listener FD_CLOEXEC=%d O_ACCMODE=%d O_NONBLOCK=%d\n", !!(fdfl & FD_CLOEXEC), fl & O_ACCMODE, !!(fl & O_NONBLOCK));
        uint64_t fl64 = SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
        r = ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, fl64);
        printf("child: SET_FLAGS(SYNC_WAKE_UP) -> %d (%s)\n", r, r < 0 ? strerror(errno) : "ok");
        r = ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (uint64_t)2);
        printf("child: SET_FLAGS(2) -> %d (%s)\n", r, r < 0 ? strerror(errno) : "expected EINVAL");
        struct seccomp_notif_addfd a = { .id = 12345, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = 0 };
        r = ioctl(fd, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
        printf("child: ADDFD(FLAG_SEND, bogus id) -> %d (%s)  [ENOENT = supported, EINVAL = no FLAG_SEND]\n", r, strerror(errno));
        a.flags = 1UL << 5;
        r = ioctl(fd, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
        printf("child: ADDFD(unknown flag) -> %d (%s)\n", r, strerror(errno));
        uint64_t id = 12345;
        r = ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id);
        printf("child: ID_VALID(bogus) -> %d (%s)\n", r, strerror(errno));
        /* A second listener anywhere in the chain: EBUSY. */
        int fd2 = install_notify_filter(SYS_getpid, SECCOMP_FILTER_FLAG_NEW_LISTENER);
        printf("child: second NEW_LISTENER -> %d (%s)\n", fd2, fd2 < 0 ? strerror(errno) : "ok");
        /* A filter without a listener is fine on top. */
        int r3 = install_notify_filter(SYS_getpid, 0);
        printf("child: plain filter on top -> %d\n", r3);
        /* and a grandchild inherits: second listener EBUSY there too */
        pid_t g = fork();
        if (g == 0) {
            int fd3 = install_notify_filter(SYS_getpid, SECCOMP_FILTER_FLAG_NEW_LISTENER);
            printf("grandchild: NEW_LISTENER -> %d (%s)\n", fd3, fd3 < 0 ? strerror(errno) : "ok");
            _exit(0);
        }
        waitpid(g, NULL, 0);
        /* TSYNC|TSYNC_ESRCH|NEW_LISTENER is accepted (in a fresh grandchild, no listener yet is impossible: we already have one) */
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    pid = fork();
    if (pid == 0) {
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        int fd = install_notify_filter(SYS_getppid, SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH);
        printf("child2: NEW_LISTENER|TSYNC|TSYNC_ESRCH -> %d (%s)\n", fd, fd < 0 ? strerror(errno) : "ok");
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    return 0;
}
