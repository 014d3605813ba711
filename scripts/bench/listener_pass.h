/* listener_pass.h - the seccomp listener handed from the filtered child to
 * its supervisor over a socketpair (SCM_RIGHTS), and the SYNC_WAKE_UP
 * definitions older headers lack. Shared by notif_roundtrip.c and
 * floor_supervisor.c. */
#ifndef LISTENER_PASS_H
#define LISTENER_PASS_H
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS _IOW('!', 4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1
#endif

static int send_fd(int s, int fd) {
    char b[CMSG_SPACE(sizeof(int))] = {0}, c = 'x';
    struct iovec io = {&c, 1};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = b, .msg_controllen = sizeof b};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    return sendmsg(s, &m, 0) == 1 ? 0 : -1;
}

static int recv_fd(int s) {
    char b[CMSG_SPACE(sizeof(int))] = {0}, c;
    struct iovec io = {&c, 1};
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = b, .msg_controllen = sizeof b};
    if (recvmsg(s, &m, 0) != 1 || !CMSG_FIRSTHDR(&m)) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
    return fd;
}
#endif
