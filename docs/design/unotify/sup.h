/* A minimal user-notification supervisor that emulates connect() the way the
 * design proposes: borrow the socket (pidfd_getfd through the thread's pidfd),
 * private copy of the address (process_vm_readv), ID_VALID, decide, connect on
 * the borrowed socket (O_NONBLOCK for the duration), reply; a blocking connect
 * still in progress is parked in epoll (no thread held) with its SO_SNDTIMEO
 * deadline, and the kernel's own signal handling interrupts the program. */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

struct pend {
    int used, sock, tid, first;
    uint64_t id, ino, deadline; /* 0: none */
};
#define MAXP 64
struct sup {
    int l, ep, mode_epoll, verbose, deny_port, pass, cache_pidfd, cached_tid, cached_pidfd;
    uint64_t *work; long nwork, maxwork; uint64_t t_send; uint64_t ph[8]; uint64_t *phs[8]; long nph;
    long notifs, emulated, continued, restarts, abandoned, lost;
    struct pend p[MAXP];
    struct { uint64_t ino; int tid, first, used; } gone[MAXP]; int gone_next;
};

static int sup_reply(struct sup *s, uint64_t id, int64_t val, int32_t err, uint32_t flags) {
    struct seccomp_notif_resp r = { .id = id, .val = val, .error = err, .flags = flags };
    s->t_send = now_ns();
    int rc = ioctl(s->l, SECCOMP_IOCTL_NOTIF_SEND, &r);
    if (rc < 0) s->lost++;
    if (rc < 0 && s->verbose) fprintf(stderr, "sup: SEND %llx: %s\n", (unsigned long long)id, strerror(errno));
    return rc;
}
static uint64_t ino_of(int fd) { struct stat st; return fstat(fd, &st) ? 0 : st.st_ino; }
static uint64_t sndtimeo_ns(int fd) {
    struct timeval tv = {0}; socklen_t l = sizeof tv;
    getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &l);
    return (uint64_t)tv.tv_sec * 1000000000ull + tv.tv_usec * 1000ull;
}
static struct pend *find_ino(struct sup *s, uint64_t ino) {
    for (int i = 0; i < MAXP; i++) if (s->p[i].used && s->p[i].ino == ino) return &s->p[i];
    return NULL;
}
static void drop(struct sup *s, struct pend *p) { close(p->sock); p->used = 0; }
/* Final result of a finished connect on the borrowed socket. */
static int so_error(int fd) { int e = 0; socklen_t l = sizeof e; getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l); return e; }
static void park(struct sup *s, int sock, uint64_t id, int tid, uint64_t ino, int first) {
    for (int i = 0; i < MAXP; i++) if (!s->p[i].used) {
        struct pend *p = &s->p[i];
        uint64_t t = sndtimeo_ns(sock);
        *p = (struct pend){ .used = 1, .sock = sock, .tid = tid, .first = first, .id = id, .ino = ino,
                            .deadline = t ? now_ns() + t : 0 };
        struct epoll_event ev = { .events = EPOLLOUT | EPOLLONESHOT, .data.u64 = 1000 + i };
        epoll_ctl(s->ep, EPOLL_CTL_ADD, sock, &ev);
        return;
    }
    sup_reply(s, id, 0, -EAGAIN, 0); close(sock);
}

static void handle(struct sup *s, struct seccomp_notif *n) {
    s->notifs++;
    if (s->pass || n->data.nr != SYS_connect || n->data.arch != AUDIT_ARCH_X86_64) {
        s->continued++;
        sup_reply(s, n->id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE);
        return;
    }
    int fd = (int)n->data.args[0];
    s->ph[0] = now_ns();
    uint64_t uaddr = n->data.args[1];
    int len = (int)n->data.args[2];
    if (len < 0 || len > 128) { sup_reply(s, n->id, 0, -EINVAL, 0); return; }
    int pidfd;
    if (s->cache_pidfd && s->cached_tid == (int)n->pid) pidfd = s->cached_pidfd;
    else pidfd = pidfd_open(n->pid, PIDFD_THREAD);
    if (pidfd < 0) { sup_reply(s, n->id, 0, -ESRCH, 0); return; }
    int sock = pidfd_getfd(pidfd, fd, 0);
    if (s->cache_pidfd) { if (s->cached_tid != (int)n->pid) { if (s->cached_tid) close(s->cached_pidfd); s->cached_tid = n->pid; s->cached_pidfd = pidfd; } }
    else close(pidfd);
    if (sock < 0) { sup_reply(s, n->id, 0, -errno, 0); return; }
    s->ph[1] = now_ns();
    unsigned char addr[128];
    struct iovec lo = { addr, len }, re = { (void *)uaddr, len };
    if (len && process_vm_readv(n->pid, &lo, 1, &re, 1, 0) != len) { close(sock); sup_reply(s, n->id, 0, -EFAULT, 0); return; }
    /* The copy is ours; make sure it was read from the thread still in the call. */
    s->ph[2] = now_ns();
    if (ioctl(s->l, SECCOMP_IOCTL_NOTIF_ID_VALID, &n->id) < 0) { close(sock); return; }
    s->ph[3] = now_ns();
    int dom = 0; socklen_t dl = sizeof dom;
    getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &dom, &dl);
    if (dom != AF_INET && dom != AF_INET6) { /* not emulated: the kernel judges it */
        close(sock); s->continued++; sup_reply(s, n->id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE); return;
    }
    if (len >= 4 && s->deny_port && ((struct sockaddr_in *)addr)->sin_port == htons(s->deny_port)) {
        if (s->verbose) fprintf(stderr, "sup: tid %d connect to port %d denied\n", n->pid, s->deny_port);
        close(sock); sup_reply(s, n->id, 0, -EACCES, 0); return;
    }
    s->emulated++;
    uint64_t ino = ino_of(sock);
    struct pend *old = find_ino(s, ino);
    for (int g = 0; !old && g < MAXP; g++)
        if (s->gone[g].used && s->gone[g].ino == ino && s->gone[g].tid == (int)n->pid) {
            /* The wait was let go by the sweep: this is its restart, or a new call. */
            s->gone[g].used = 0; s->restarts++;
            if (sndtimeo_ns(sock)) { close(sock); sup_reply(s, n->id, 0, -EINTR, 0); return; }
            park(s, sock, n->id, n->pid, ino, s->gone[g].first);
            return;
        }
    if (old) {
        /* A connect on a socket whose connect we are waiting for. If that
         * notification is gone, the program was interrupted by a signal and
         * this is the kernel's restart (SA_RESTART), or a new call. */
        if (ioctl(s->l, SECCOMP_IOCTL_NOTIF_ID_VALID, &old->id) < 0) {
            s->restarts++;
            epoll_ctl(s->ep, EPOLL_CTL_DEL, old->sock, NULL);
            int first = old->first; drop(s, old);
            if (sndtimeo_ns(sock)) { /* native: a connect with a timeout is never restarted */
                close(sock); sup_reply(s, n->id, 0, -EINTR, 0); return;
            }
            park(s, sock, n->id, n->pid, ino, first);
            return;
        }
    }
    s->ph[4] = now_ns();
    int fl = fcntl(sock, F_GETFL);
    int blocking = !(fl & O_NONBLOCK);
    if (blocking) fcntl(sock, F_SETFL, fl | O_NONBLOCK);
    s->ph[5] = now_ns();
    int r = connect(sock, (struct sockaddr *)addr, len);
    int e = r ? errno : 0;
    s->ph[6] = now_ns();
    if (e == EINPROGRESS && blocking) {
        struct pollfd pf = { sock, POLLOUT, 0 };
        if (poll(&pf, 1, 0) == 1) { r = connect(sock, (struct sockaddr *)addr, len); e = r ? errno : 0; if (e == EISCONN) e = 0; }
    }
    if (blocking) fcntl(sock, F_SETFL, fl);
    if (blocking && (e == EINPROGRESS || e == EALREADY)) {
        park(s, sock, n->id, n->pid, ino, e == EINPROGRESS);
        return;
    }
    close(sock);
    s->ph[7] = now_ns();
    if (s->phs[0] && s->nph < s->maxwork) { for (int q = 0; q < 7; q++) s->phs[q][s->nph] = s->ph[q + 1] - s->ph[q]; s->nph++; }
    sup_reply(s, n->id, 0, -e, 0);
}

static void complete(struct sup *s, struct pend *p, int timed_out) {
    epoll_ctl(s->ep, EPOLL_CTL_DEL, p->sock, NULL);
    int err = timed_out ? (p->first ? EINPROGRESS : EALREADY) : so_error(p->sock);
    if (sup_reply(s, p->id, 0, -err, 0) < 0) s->abandoned++;
    drop(s, p);
}

/* One iteration. Blocks in RECV when nothing is parked (so SYNC_WAKE_UP
 * applies), in epoll_wait otherwise. Returns 0 when the filter has no users. */
static int sup_step(struct sup *s) {
    struct seccomp_notif n;
    int parked = 0; uint64_t next = 0;
    for (int i = 0; i < MAXP; i++) if (s->p[i].used) {
        parked++;
        if (s->p[i].deadline && (!next || s->p[i].deadline < next)) next = s->p[i].deadline;
    }
    if (!parked && !s->mode_epoll) {
        memset(&n, 0, sizeof n);
        if (ioctl(s->l, SECCOMP_IOCTL_NOTIF_RECV, &n) < 0) return errno == EINTR ? 1 : (errno == ENOENT ? 1 : 0);
        uint64_t w0 = now_ns();
        handle(s, &n);
        if (s->work && s->nwork < s->maxwork) s->work[s->nwork++] = s->t_send - w0;
        return 1;
    }
    int timeout = 50; /* ms: also the sweep period for abandoned waits */
    if (next) { uint64_t now = now_ns(); int t = next > now ? (int)((next - now) / 1000000) + 1 : 0; if (t < timeout) timeout = t; }
    if (!parked) timeout = -1;
    struct epoll_event ev[16];
    int k = epoll_wait(s->ep, ev, 16, timeout);
    for (int i = 0; i < k; i++) {
        if (ev[i].data.u64 == 1) {
            if (ev[i].events & EPOLLIN) {
                memset(&n, 0, sizeof n);
                if (ioctl(s->l, SECCOMP_IOCTL_NOTIF_RECV, &n) == 0) handle(s, &n);
            } else if (ev[i].events & EPOLLHUP) return 0;
        } else {
            struct pend *p = &s->p[ev[i].data.u64 - 1000];
            if (p->used) complete(s, p, 0);
        }
    }
    uint64_t now = now_ns();
    for (int i = 0; i < MAXP; i++) {
        struct pend *p = &s->p[i];
        if (!p->used) continue;
        if (p->deadline && now >= p->deadline) { complete(s, p, 1); continue; }
        if (ioctl(s->l, SECCOMP_IOCTL_NOTIF_ID_VALID, &p->id) < 0) {
            /* Interrupted (EINTR, or a restart still to come: a stopped program
             * restarts at SIGCONT) or dead: let go of the socket, keep a note. */
            int g = s->gone_next++ % MAXP;
            s->gone[g].ino = p->ino; s->gone[g].tid = p->tid; s->gone[g].first = p->first; s->gone[g].used = 1;
            epoll_ctl(s->ep, EPOLL_CTL_DEL, p->sock, NULL); drop(s, p); s->abandoned++;
        }
    }
    return 1;
}

static void sup_init(struct sup *s, int listener, int mode_epoll, int sync) {
    memset(s, 0, sizeof *s);
    s->l = listener; s->mode_epoll = mode_epoll;
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 1 };
    epoll_ctl(s->ep, EPOLL_CTL_ADD, listener, &ev);
    if (sync && ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (uint64_t)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) < 0)
        perror("SET_FLAGS");
}

/* Fork a target that installs a connect filter, gives us the listener by
 * number over a pipe (write(2) is not trapped; a sendmsg with SCM_RIGHTS would
 * be, and would wait for a supervisor that has no listener yet), then runs fn. */
static pid_t spawn_target(unsigned long flags, void (*fn)(void *), void *arg, int *listener) {
    int p[2], go[2];
    if (pipe2(p, O_CLOEXEC) || pipe2(go, O_CLOEXEC)) abort();
    pid_t t = fork();
    if (t == 0) {
        close(p[0]); close(go[1]);
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        int fd = install_notify_filter(SYS_connect, SECCOMP_FILTER_FLAG_NEW_LISTENER | flags);
        if (fd < 0) _exit(98);
        write(p[1], &fd, sizeof fd);
        char b; if (read(go[0], &b, 1) != 1) _exit(97);
        close(fd); close(p[1]); close(go[0]);
        fn(arg);
        _exit(0);
    }
    close(p[1]); close(go[0]);
    int num; if (read(p[0], &num, sizeof num) != sizeof num) abort();
    int pidfd = pidfd_open(t, 0);
    *listener = pidfd_getfd(pidfd, num, 0);
    close(pidfd);
    if (*listener < 0) { perror("pidfd_getfd"); abort(); }
    write(go[1], "g", 1); close(go[1]); close(p[0]);
    return t;
}
