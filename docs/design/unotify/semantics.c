/* Kernel behaviour of seccomp user notification that the design depends on:
 * supervisor death, signals during a pending notification (with and without
 * WAIT_KILLABLE_RECV), SA_RESTART, and whether withdrawal is visible. */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static volatile sig_atomic_t handled;
static void on_sig(int s) { (void)s; handled++; }

/* Target: install filter, hand the listener fd number over `wp`, close it, wait for go, run body. */
typedef void (*body_fn)(void);
static pid_t start_target(unsigned long flags, int nr, body_fn body, int *listener_out) {
    int p[2], go[2];
    if (pipe(p) || pipe(go)) abort();
    pid_t t = fork();
    if (t == 0) {
        close(p[0]); close(go[1]);
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        int fd = install_notify_filter(nr, flags);
        if (fd < 0) { perror("filter"); _exit(99); }
        write(p[1], &fd, sizeof fd);           /* write(2) is not trapped */
        char b; read(go[0], &b, 1);            /* parent has its copy now */
        close(fd);                             /* the program must never keep one */
        body();
        _exit(0);
    }
    close(p[1]); close(go[0]);
    int num; if (read(p[0], &num, sizeof num) != sizeof num) abort();
    int pidfd = pidfd_open(t, 0);
    int l = pidfd_getfd(pidfd, num, 0);
    if (l < 0) { perror("pidfd_getfd"); abort(); }
    close(pidfd);
    write(go[1], "g", 1);
    close(p[0]); close(go[1]);
    *listener_out = l;
    return t;
}

static int recv_one(int l, struct seccomp_notif *n) {
    memset(n, 0, sizeof *n);
    return ioctl(l, SECCOMP_IOCTL_NOTIF_RECV, n);
}
static int reply(int l, uint64_t id, int64_t val, int32_t err, uint32_t flags) {
    struct seccomp_notif_resp r = { .id = id, .val = val, .error = err, .flags = flags };
    return ioctl(l, SECCOMP_IOCTL_NOTIF_SEND, &r);
}

static struct sockaddr_in blackhole;
static void body_connect(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    uint64_t t0 = now_ns();
    int r = connect(s, (struct sockaddr *)&blackhole, sizeof blackhole);
    int e = errno;
    printf("    target: connect -> %d (%s) after %.1f ms, handler ran %d time(s)\n", r, r ? strerror(e) : "ok",
           (now_ns() - t0) / 1e6, (int)handled);
    usleep(150000); /* stay alive so the supervisor polls a live filter */
}
static void body_getppid_twice(void) {
    long r = syscall(SYS_getppid); int e = errno;
    printf("    target: first getppid -> %ld (%s)\n", r, r < 0 ? strerror(e) : "ok");
    r = syscall(SYS_getppid); e = errno;
    printf("    target: second getppid (supervisor gone) -> %ld (%s)\n", r, r < 0 ? strerror(e) : "ok");
}
static void install(int restart) {
    struct sigaction sa = { .sa_handler = on_sig, .sa_flags = restart ? SA_RESTART : 0 };
    sigaction(SIGUSR1, &sa, NULL);
}
static void body_norestart(void) { install(0); body_connect(); }
static void body_restart(void) { install(1); body_connect(); }
static void body_default(void) { body_connect(); }

static void report_exit(pid_t t) {
    int st; waitpid(t, &st, 0);
    if (WIFSIGNALED(st)) printf("    target killed by signal %d\n", WTERMSIG(st));
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    blackhole.sin_family = AF_INET; blackhole.sin_port = htons(9);
    inet_pton(AF_INET, "192.0.2.1", &blackhole.sin_addr);
    struct seccomp_notif n; int l; pid_t t;

    puts("A. supervisor dies holding a received notification, then a later call");
    t = start_target(SECCOMP_FILTER_FLAG_NEW_LISTENER, SYS_getppid, body_getppid_twice, &l);
    pid_t s = fork();
    if (s == 0) { recv_one(l, &n); printf("    supervisor: got id %llx, exiting without reply\n", (unsigned long long)n.id); _exit(0); }
    close(l); waitpid(s, NULL, 0); report_exit(t);

    puts("B1. signal with a handler (no SA_RESTART) while the notification is held");
    t = start_target(SECCOMP_FILTER_FLAG_NEW_LISTENER, SYS_connect, body_norestart, &l);
    recv_one(l, &n); uint64_t id1 = n.id;
    usleep(20000); kill(t, SIGUSR1); usleep(20000);
    struct pollfd pf = { .fd = l, .events = POLLIN | POLLOUT | POLLHUP | POLLERR };
    int pr = poll(&pf, 1, 0);
    printf("    supervisor: poll(listener) after withdrawal -> %d revents=%#x\n", pr, pf.revents);
    int r = ioctl(l, SECCOMP_IOCTL_NOTIF_ID_VALID, &id1);
    printf("    supervisor: ID_VALID(old) -> %d (%s)\n", r, r ? strerror(errno) : "valid");
    r = reply(l, id1, 0, -ECONNREFUSED, 0);
    printf("    supervisor: SEND(old) -> %d (%s)\n", r, r ? strerror(errno) : "ok");
    report_exit(t); close(l);

    puts("B2. same with SA_RESTART");
    t = start_target(SECCOMP_FILTER_FLAG_NEW_LISTENER, SYS_connect, body_restart, &l);
    recv_one(l, &n); id1 = n.id;
    usleep(20000); kill(t, SIGUSR1);
    recv_one(l, &n);
    printf("    supervisor: second notification id %s, nr=%d same args=%d\n", n.id == id1 ? "SAME" : "new", n.data.nr, 1);
    r = reply(l, id1, 0, -ECONNREFUSED, 0);
    printf("    supervisor: SEND(old) -> %d (%s)\n", r, r ? strerror(errno) : "ok");
    reply(l, n.id, 0, -ECONNREFUSED, 0);
    report_exit(t); close(l);

    puts("B3. WAIT_KILLABLE_RECV: handler signal after RECV; supervisor replies 300 ms later");
    t = start_target(SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, SYS_connect, body_norestart, &l);
    recv_one(l, &n);
    usleep(20000); kill(t, SIGUSR1); usleep(300000);
    r = reply(l, n.id, 0, -ECONNREFUSED, 0);
    printf("    supervisor: SEND -> %d (%s)\n", r, r ? strerror(errno) : "ok");
    report_exit(t); close(l);

    puts("B4. WAIT_KILLABLE_RECV: signal before RECV");
    t = start_target(SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, SYS_connect, body_norestart, &l);
    usleep(50000); kill(t, SIGUSR1); usleep(20000);
    pf.revents = 0; pr = poll(&pf, 1, 0);
    printf("    supervisor: poll -> %d revents=%#x (nothing queued any more)\n", pr, pf.revents);
    report_exit(t); close(l);

    puts("B5. WAIT_KILLABLE_RECV: SIGINT with default action after RECV (fatal)");
    t = start_target(SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, SYS_connect, body_default, &l);
    recv_one(l, &n); usleep(20000);
    uint64_t t0 = now_ns(); kill(t, SIGINT); report_exit(t);
    printf("    died %.2f ms after SIGINT\n", (now_ns() - t0) / 1e6);
    r = ioctl(l, SECCOMP_IOCTL_NOTIF_ID_VALID, &n.id);
    printf("    supervisor: ID_VALID -> %d (%s)\n", r, r ? strerror(errno) : "valid");
    pf.revents = 0; pr = poll(&pf, 1, 0);
    printf("    supervisor: poll after last user reaped -> %d revents=%#x (POLLHUP=%#x)\n", pr, pf.revents, POLLHUP);
    close(l);

    puts("B6. reply error=-ERESTARTSYS (-512): does the call restart?");
    t = start_target(SECCOMP_FILTER_FLAG_NEW_LISTENER, SYS_connect, body_norestart, &l);
    recv_one(l, &n);
    r = reply(l, n.id, 0, -512, 0);
    printf("    supervisor: SEND(-512) -> %d (%s)\n", r, r ? strerror(errno) : "ok");
    pf.revents = 0; pr = poll(&pf, 1, 200);
    if (pr == 1 && (pf.revents & POLLIN)) { recv_one(l, &n); printf("    supervisor: restarted -> new notification nr=%d\n", n.data.nr); reply(l, n.id, 0, -EHOSTUNREACH, 0); }
    else printf("    supervisor: no new notification (poll %d)\n", pr);
    report_exit(t); close(l);
    return 0;
}
