/* h_own_filter MODE PORT
 * Class 1 probe: the program installs seccomp filters of its own and then
 * connects to 127.0.0.1:PORT (which the test's policy denies).
 * MODE:
 *   trace-data  a filter returning SECCOMP_RET_TRACE for connect with data
 *               values a tracer might use as tags (0, 1, 2, 0xffff): four
 *               filters, one per value, each followed by a connect
 *   notif       a filter returning SECCOMP_RET_USER_NOTIF for connect with a
 *               listener (SECCOMP_FILTER_FLAG_NEW_LISTENER); a thread answers
 *               every notification with SECCOMP_USER_NOTIF_FLAG_CONTINUE
 *   notif-tsync the same with SECCOMP_FILTER_FLAG_TSYNC as well
 * Prints listener=OK|<ERRNO> (notif modes) and, for each connect,
 * connect=OK|<ERRNO>. Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int port;

static void try_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) printf("connect=OK\n");
    else printf("connect=%s\n", strerrorname_np(errno));
    fflush(stdout);
    close(fd);
}

static long install(unsigned int action, unsigned int flags) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_connect, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = 4, .filter = f };
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static void *answer(void *arg) {
    int lfd = *(int *)arg;
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    for (;;) {
        memset(&req, 0, sizeof req);
        if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) return NULL;
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: h_own_filter MODE PORT\n"); return 2; }
    port = atoi(argv[2]);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (!strcmp(argv[1], "trace-data")) {
        unsigned int data[] = { 0, 1, 2, 0xffff };
        for (int i = 0; i < 4; i++) {
            if (install(SECCOMP_RET_TRACE | data[i], 0) < 0) {
                printf("install=%s\n", strerrorname_np(errno));
                return 0;
            }
            try_connect();
        }
        return 0;
    }
    unsigned int flags = SECCOMP_FILTER_FLAG_NEW_LISTENER;
    if (!strcmp(argv[1], "notif-tsync")) flags |= SECCOMP_FILTER_FLAG_TSYNC_ESRCH | SECCOMP_FILTER_FLAG_TSYNC;
    else if (strcmp(argv[1], "notif")) { fprintf(stderr, "bad mode\n"); return 2; }
    long lfd = install(SECCOMP_RET_USER_NOTIF, flags);
    if (lfd < 0) {
        printf("listener=%s\n", strerrorname_np(errno));
    } else {
        printf("listener=OK\n");
        static int fd;
        fd = (int)lfd;
        pthread_t t;
        pthread_create(&t, NULL, answer, &fd);
        pthread_detach(t);
    }
    fflush(stdout);
    try_connect();
    return 0;
}
