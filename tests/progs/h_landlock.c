/* h_landlock net|fs|net-child ALLOWED_PORT OTHER_PORT
 * Class 7 probe: a program that restricts itself with Landlock, then
 * connects to 127.0.0.1:ALLOWED_PORT and 127.0.0.1:OTHER_PORT.
 *   net        the ruleset handles TCP connect and allows ALLOWED_PORT only
 *   net-child  the same, and the connects are made by a forked child
 *   fs         the ruleset handles only file reads (network untouched)
 *   race       a sibling thread flips the attribute's handled_access_net
 *              between 0 and TCP connect while the ruleset is created; a
 *              ruleset the kernel made handling TCP connect (it takes a
 *              port rule) restricts the process, which connects to OTHER
 *              (up to 40 tries, each in a child); prints other=... once
 *   passed     a child creates a filesystem-only ruleset of its own, then
 *              restricts itself with one its parent created afterwards
 *              (handling TCP connect, allowing no port) and passed to it
 *              over SCM_RIGHTS; the child connects to both ports
 * Prints restrict=OK|<ERRNO>, allowed=OK|<ERRNO>, other=OK|<ERRNO>. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Declared here: Debian 12's kernel headers predate Landlock's network rules. */
struct ruleset_attr { uint64_t handled_access_fs, handled_access_net; };
struct net_port_attr { uint64_t allowed_access, port; } __attribute__((packed));
#define ACCESS_FS_READ_FILE (1ULL << 2)
#define ACCESS_NET_CONNECT_TCP (1ULL << 1)
#define RULE_NET_PORT 2

static const char *dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char *r = connect(fd, (struct sockaddr *)&sa, sizeof sa) ? strerrorname_np(errno) : "OK";
    close(fd);
    return r;
}

static volatile struct ruleset_attr flipping;
static volatile int stop_flip;
static void *flip(void *a) {
    (void)a;
    while (!stop_flip) { flipping.handled_access_net = ACCESS_NET_CONNECT_TCP; flipping.handled_access_net = 0; }
    return NULL;
}

static int race(int other) {
    pthread_t t;
    pthread_create(&t, NULL, flip, NULL);
    for (int i = 0; i < 40; i++) {
        /* Handling TCP connect unless the sibling flips it meanwhile, so
         * that a busy machine that never runs the sibling still tries. */
        flipping.handled_access_net = ACCESS_NET_CONNECT_TCP;
        int rs = syscall(SYS_landlock_create_ruleset, (void *)&flipping, sizeof flipping, 0);
        if (rs < 0) continue;
        struct net_port_attr p = { .allowed_access = ACCESS_NET_CONNECT_TCP, .port = 1 };
        if (syscall(SYS_landlock_add_rule, rs, RULE_NET_PORT, &p, 0) != 0) { close(rs); continue; }
        pid_t c = fork();
        if (c == 0) {
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            syscall(SYS_landlock_restrict_self, rs, 0);
            printf("other=%s\n", dial(other));
            fflush(stdout);
            _exit(0);
        }
        waitpid(c, NULL, 0);
        close(rs);
    }
    stop_flip = 1;
    pthread_join(t, NULL);
    return 0;
}

static int passed(int allowed, int other) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv)) return 2;
    pid_t p = fork();
    if (p == 0) {
        struct ruleset_attr fs = { .handled_access_fs = ACCESS_FS_READ_FILE };
        int own = syscall(SYS_landlock_create_ruleset, &fs, sizeof fs, 0);
        char c;
        struct iovec iov = { &c, 1 };
        char cbuf[CMSG_SPACE(sizeof(int))];
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
        if (recvmsg(sv[1], &m, 0) < 0 || own < 0) _exit(2);
        int rs;
        memcpy(&rs, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof rs);
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        printf("restrict=%s\n", syscall(SYS_landlock_restrict_self, rs, 0) ? strerrorname_np(errno) : "OK");
        printf("allowed=%s\n", dial(allowed));
        printf("other=%s\n", dial(other));
        fflush(stdout);
        _exit(0);
    }
    struct ruleset_attr net = { .handled_access_net = ACCESS_NET_CONNECT_TCP };
    int rs = syscall(SYS_landlock_create_ruleset, &net, sizeof net, 0);
    char c = 'r';
    struct iovec iov = { &c, 1 };
    char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &rs, sizeof rs);
    sendmsg(sv[0], &m, 0);
    waitpid(p, NULL, 0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: h_landlock net|fs|net-child|passed ALLOWED OTHER\n"); return 2; }
    int allowed = atoi(argv[2]), other = atoi(argv[3]);
    if (!strcmp(argv[1], "passed")) return passed(allowed, other);
    if (!strcmp(argv[1], "race")) return race(other);
    int net = strncmp(argv[1], "net", 3) == 0;
    struct ruleset_attr attr = { 0 };
    if (net) attr.handled_access_net = ACCESS_NET_CONNECT_TCP;
    else attr.handled_access_fs = ACCESS_FS_READ_FILE;
    int rs = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (rs < 0) { printf("restrict=%s\n", strerrorname_np(errno)); return 0; }
    if (net) {
        struct net_port_attr p = { .allowed_access = ACCESS_NET_CONNECT_TCP, .port = allowed };
        syscall(SYS_landlock_add_rule, rs, RULE_NET_PORT, &p, 0);
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    printf("restrict=%s\n", syscall(SYS_landlock_restrict_self, rs, 0) ? strerrorname_np(errno) : "OK");
    fflush(stdout);
    if (!strcmp(argv[1], "net-child")) {
        pid_t p = fork();
        if (p > 0) { waitpid(p, NULL, 0); return 0; }
    }
    printf("allowed=%s\n", dial(allowed));
    printf("other=%s\n", dial(other));
    return 0;
}
