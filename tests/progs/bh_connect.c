/* bh_connect MODE ADDR PORT
 * Issue 14 probe: a blocking TCP connect to ADDR:PORT, an address that never
 * answers (a black hole in the test's network namespace), with signals sent
 * by a forked helper once the connect is waiting in the kernel ("ready": the
 * caller sleeps in syscall 42 and a SYN_SENT socket toward ADDR:PORT exists).
 * Signal times below count from "ready".
 * MODE:
 *   eintr          SIGUSR1 (handler, no SA_RESTART) at 200 ms: EINTR at once
 *   restart        SIGUSR1 (handler, SA_RESTART) at 200 ms: the connect goes
 *                  on waiting (checked 300 ms later); SIGUSR2 (no SA_RESTART)
 *                  at 700 ms ends it with EINTR
 *   timed-restart  SO_SNDTIMEO 2 s, SIGUSR1 with SA_RESTART at 200 ms: a
 *                  connect with a timeout is not restarted: EINTR at 200 ms
 *   sndtimeo       SO_SNDTIMEO 300 ms, no signal: EINPROGRESS after 300 ms;
 *                  a second connect: EALREADY after another 300 ms
 *   stop           SO_SNDTIMEO 2 s; SIGSTOP at 200 ms, SIGCONT at 500 ms:
 *                  EINTR at SIGCONT (a stopped timed connect is not restarted)
 *   stop-untimed   no timeout; SIGSTOP at 200 ms, SIGCONT at 500 ms: the
 *                  connect restarts and goes on waiting (checked 300 ms
 *                  later); SIGUSR2 (no SA_RESTART) at 900 ms: EINTR
 *   block          no handler, no timeout: waits until a signal kills it (the
 *                  test types ^C); prints "connecting" first
 *   block-int      the same with a SIGINT handler (no SA_RESTART): ^C ends the
 *                  connect with EINTR and the probe exits 0
 * Output: one line of outcomes that must equal the untraced run's
 *   result=ERRNO [second=ERRNO] usr1=N usr2=N [sigint=N] [waiting_after=yes|no] [stopped=yes|no]
 * and one line of timings (milliseconds):
 *   timing: ready=R total=T [first=F second=S] [after_last_signal=A] [state=C]
 * A safety alarm (default action) ends the probe after 10 s.
 *
 * bh_connect parked ADDR PORT
 *   A child process and a thread of this process each block in a connect to
 *   ADDR:PORT; once both wait, 100 connects to a listener of ours on
 *   127.0.0.1 must finish promptly.
 *   Prints "ok=N failed=N blockers_waiting=N" and
 *   "timing: ready=R total=T max=M" (milliseconds, float). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_until(uint64_t at) {
    struct timespec t = { (time_t)(at / 1000000000ull), (long)(at % 1000000000ull) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {}
}

static double ms(uint64_t a, uint64_t b) { return ((double)b - (double)a) / 1e6; }

/* State shared with the helper (MAP_SHARED, set up before the fork). */
struct shared {
    volatile uint64_t ready, sig[3];
    volatile int done, waiting_after;
    volatile char state;
};
static struct shared *sh;

static volatile sig_atomic_t usr1, usr2, ints;
static void on_int(int s) { (void)s; ints++; }
static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2++; }

static struct sockaddr_in dst;

/* /proc/net/tcp form of dst: "0100007F:0050". */
static void tcp_key(char *out, size_t n) {
    snprintf(out, n, "%08X:%04X", dst.sin_addr.s_addr, ntohs(dst.sin_port));
}

/* SYN_SENT sockets toward dst in this network namespace. */
static int syn_sent(void) {
    char key[32], line[512];
    tcp_key(key, sizeof key);
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f) return 0;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char rem[64], st[8];
        if (sscanf(line, " %*s %*s %63s %7s", rem, st) == 2 && !strcmp(rem, key) && !strcmp(st, "02")) n++;
    }
    fclose(f);
    return n;
}

/* Thread `tid` of `pid` sleeps in connect(): state S and syscall 42. */
static int in_connect(pid_t pid, pid_t tid, char *state) {
    char p[96], b[512];
    snprintf(p, sizeof p, "/proc/%d/task/%d/stat", pid, tid);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    char *ok = fgets(b, sizeof b, f);
    fclose(f);
    if (!ok) return 0;
    char *q = strrchr(b, ')');
    if (!q || q[1] != ' ') return 0;
    if (state) *state = q[2];
    if (q[2] != 'S') return 0;
    snprintf(p, sizeof p, "/proc/%d/task/%d/syscall", pid, tid);
    f = fopen(p, "r");
    if (!f) return 0;
    ok = fgets(b, sizeof b, f);
    fclose(f);
    return ok && !strncmp(b, "42 ", 3);
}

static char proc_state(pid_t pid) {
    char s = '?';
    in_connect(pid, pid, &s);
    return s;
}

/* Wait (at most 5 s) until `pid`'s thread `tid` waits in connect and `n`
 * SYN_SENT sockets toward dst exist. */
static int wait_ready(pid_t pid, pid_t tid, int n) {
    uint64_t end = now_ns() + 5000000000ull;
    while (now_ns() < end) {
        if (in_connect(pid, tid, NULL) && syn_sent() >= n) return 1;
        usleep(2000);
    }
    return 0;
}

struct plan {
    int n;
    int at_ms[3];
    int sig[3];
    int check_waiting_ms; /* 0: none */
    int check_state_ms;   /* 0: none */
};

static pid_t helper(pid_t target, const struct plan *p) {
    pid_t h = fork();
    if (h != 0) return h;
    if (!wait_ready(target, target, 1)) {
        fprintf(stderr, "bh_connect: the connect never started waiting\n");
        kill(target, SIGKILL);
        _exit(1);
    }
    uint64_t t0 = now_ns();
    sh->ready = t0;
    int checked_w = !p->check_waiting_ms, checked_s = !p->check_state_ms;
    for (int i = 0; i < p->n; i++) {
        uint64_t at = t0 + (uint64_t)p->at_ms[i] * 1000000ull;
        if (!checked_s && (uint64_t)p->check_state_ms * 1000000ull + t0 < at) {
            sleep_until(t0 + (uint64_t)p->check_state_ms * 1000000ull);
            sh->state = proc_state(target);
            checked_s = 1;
        }
        if (!checked_w && (uint64_t)p->check_waiting_ms * 1000000ull + t0 < at) {
            sleep_until(t0 + (uint64_t)p->check_waiting_ms * 1000000ull);
            sh->waiting_after = !sh->done;
            checked_w = 1;
        }
        sleep_until(at);
        if (sh->done) break;
        sh->sig[i] = now_ns();
        kill(target, p->sig[i]);
    }
    _exit(0);
}

static const char *errname(int e) { return e ? strerrorname_np(e) : "0"; }

static int do_connect(int s) {
    return connect(s, (struct sockaddr *)&dst, sizeof dst) ? errno : 0;
}

static int one(const char *mode) {
    struct plan p = { 0 };
    int restart = 0, timeo_ms = 0, second = 0, block = 0;
    if (!strcmp(mode, "eintr")) {
        p = (struct plan){ 1, { 200 }, { SIGUSR1 } };
    } else if (!strcmp(mode, "restart")) {
        restart = 1;
        p = (struct plan){ 2, { 200, 700 }, { SIGUSR1, SIGUSR2 }, 500 };
    } else if (!strcmp(mode, "timed-restart")) {
        restart = 1;
        timeo_ms = 2000;
        p = (struct plan){ 1, { 200 }, { SIGUSR1 } };
    } else if (!strcmp(mode, "sndtimeo")) {
        timeo_ms = 300;
        second = 1;
    } else if (!strcmp(mode, "stop")) {
        timeo_ms = 2000;
        p = (struct plan){ 2, { 200, 500 }, { SIGSTOP, SIGCONT }, 0, 350 };
    } else if (!strcmp(mode, "stop-untimed")) {
        p = (struct plan){ 3, { 200, 500, 900 }, { SIGSTOP, SIGCONT, SIGUSR2 }, 800, 350 };
    } else if (!strcmp(mode, "block")) {
        block = 1;
    } else if (!strcmp(mode, "block-int")) {
        block = 2;
        struct sigaction ai = { .sa_handler = on_int };
        sigaction(SIGINT, &ai, NULL);
    } else {
        fprintf(stderr, "bh_connect: bad mode %s\n", mode);
        return 2;
    }
    struct sigaction a1 = { .sa_handler = on_usr1, .sa_flags = restart ? SA_RESTART : 0 };
    struct sigaction a2 = { .sa_handler = on_usr2 };
    sigaction(SIGUSR1, &a1, NULL);
    sigaction(SIGUSR2, &a2, NULL);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) { perror("socket"); return 2; }
    if (timeo_ms) {
        struct timeval tv = { timeo_ms / 1000, (timeo_ms % 1000) * 1000 };
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    pid_t h = p.n ? helper(getpid(), &p) : -1;
    if (block) { printf("connecting\n"); fflush(stdout); }
    uint64_t t0 = now_ns();
    int e = do_connect(s);
    uint64_t t1 = now_ns();
    int e2 = 0;
    uint64_t t2 = t1;
    if (second) {
        e2 = do_connect(s);
        t2 = now_ns();
    }
    sh->done = 1;
    if (h > 0) {
        kill(h, SIGKILL);
        waitpid(h, NULL, 0);
    }
    printf("result=%s", errname(e));
    if (second) printf(" second=%s", errname(e2));
    printf(" usr1=%d usr2=%d", (int)usr1, (int)usr2);
    if (block) printf(" sigint=%d", (int)ints);
    if (p.check_waiting_ms) printf(" waiting_after=%s", sh->waiting_after ? "yes" : "no");
    if (p.check_state_ms) printf(" stopped=%s", sh->state == 'T' || sh->state == 't' ? "yes" : "no");
    printf("\ntiming: ready=%.1f total=%.1f", sh->ready ? ms(t0, sh->ready) : 0.0, ms(t0, t2));
    if (second) printf(" first=%.1f second=%.1f", ms(t0, t1), ms(t1, t2));
    uint64_t last = 0;
    for (int i = 0; i < 3; i++) if (sh->sig[i]) last = sh->sig[i];
    if (last) printf(" after_last_signal=%.1f", ms(last, t1));
    if (p.check_state_ms) printf(" state=%c", sh->state);
    printf("\n");
    return 0;
}

static volatile int thread_done;
static volatile pid_t thread_tid;
static void *blocker(void *arg) {
    (void)arg;
    thread_tid = (pid_t)syscall(SYS_gettid);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    do_connect(s);
    thread_done = 1;
    return NULL;
}

static int parked(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in la = { .sin_family = AF_INET };
    la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof la;
    if (bind(l, (struct sockaddr *)&la, sizeof la) || listen(l, 512) || getsockname(l, (struct sockaddr *)&la, &len)) {
        perror("listener");
        return 2;
    }
    pid_t child = fork();
    if (child == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        do_connect(s);
        sh->done = 1;
        _exit(0);
    }
    pthread_t t;
    pthread_create(&t, NULL, blocker, NULL);
    uint64_t t0 = now_ns();
    while (!thread_tid && now_ns() - t0 < 5000000000ull) usleep(1000);
    if (!wait_ready(child, child, 1) || !wait_ready(getpid(), thread_tid, 2)) {
        fprintf(stderr, "bh_connect: the blocking connects never started waiting\n");
        kill(child, SIGKILL);
        return 1;
    }
    uint64_t t1 = now_ns(), worst = 0;
    int ok = 0, failed = 0;
    for (int i = 0; i < 100; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        uint64_t a = now_ns();
        if (connect(s, (struct sockaddr *)&la, sizeof la) == 0) ok++;
        else failed++;
        uint64_t d = now_ns() - a;
        if (d > worst) worst = d;
        close(s);
    }
    uint64_t t2 = now_ns();
    int waiting = !sh->done + !thread_done;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    printf("ok=%d failed=%d blockers_waiting=%d\n", ok, failed, waiting);
    printf("timing: ready=%.1f total=%.1f max=%.3f\n", ms(t0, t1), ms(t1, t2), worst / 1e6);
    fflush(stdout);
    _exit(0); /* the thread is still in its connect */
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: bh_connect MODE ADDR PORT\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(10);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) { perror("mmap"); return 2; }
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1) { fprintf(stderr, "bad address\n"); return 2; }
    if (!strcmp(argv[1], "parked")) return parked();
    return one(argv[1]);
}
