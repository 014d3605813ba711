/* Native vs emulated-under-user-notification semantics of a blocking connect
 * to a black hole (run inside `unshare -n`, see sem.sh). */
#include "sup.h"
#include <pthread.h>

static volatile sig_atomic_t usr1, usr2;
static void h1(int s) { (void)s; usr1++; }
static void h2(int s) { (void)s; usr2++; }
struct sc { const char *name; int restart1, sndtimeo_ms, nonblock, second, port; const char *dst; int sig_at_ms[2]; int sig[2]; };

static void body(void *arg) {
    struct sc *c = arg;
    struct sigaction a1 = { .sa_handler = h1, .sa_flags = c->restart1 ? SA_RESTART : 0 };
    struct sigaction a2 = { .sa_handler = h2 };
    sigaction(SIGUSR1, &a1, NULL); sigaction(SIGUSR2, &a2, NULL);
    int s = socket(AF_INET, SOCK_STREAM | (c->nonblock ? SOCK_NONBLOCK : 0), 0);
    if (c->sndtimeo_ms) { struct timeval tv = { c->sndtimeo_ms / 1000, (c->sndtimeo_ms % 1000) * 1000 }; setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(c->port) };
    inet_pton(AF_INET, c->dst, &a.sin_addr);
    uint64_t t0 = now_ns();
    int r = connect(s, (struct sockaddr *)&a, sizeof a); int e = r ? errno : 0;
    printf("    %-8s -> %-12s at %4.0f ms (usr1 %d, usr2 %d)", "connect", e ? strerrorname_np(e) : "0", (now_ns() - t0) / 1e6, (int)usr1, (int)usr2);
    if (c->second) {
        r = connect(s, (struct sockaddr *)&a, sizeof a); e = r ? errno : 0;
        printf("; again -> %s at %4.0f ms", e ? strerrorname_np(e) : "0", (now_ns() - t0) / 1e6);
    }
    printf("\n");
}

static void signaller(pid_t t, struct sc *c) {
    if (fork() == 0) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < 2; i++) if (c->sig[i]) {
            uint64_t at = t0 + c->sig_at_ms[i] * 1000000ull, now = now_ns();
            if (at > now) usleep((at - now) / 1000);
            kill(t, c->sig[i]);
        }
        _exit(0);
    }
}

static int killable;
static void run(struct sc *c, int emulated) {
    pid_t t; int l = -1;
    if (!emulated) { t = fork(); if (t == 0) { body(c); _exit(0); } }
    else t = spawn_target(killable ? SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV : 0, body, c, &l);
    signaller(t, c);
    uint64_t t0 = now_ns();
    if (c->sig[0] == SIGSTOP && fork() == 0) { /* report the target's state while stopped */
        usleep(350000); char p[64], b[512]; snprintf(p, sizeof p, "/proc/%d/stat", t);
        FILE *f = fopen(p, "r"); if (f && fgets(b, sizeof b, f)) { char *q = strrchr(b, ')'); printf("    state at 350 ms: %c\n", q ? q[2] : '?'); }
        _exit(0);
    }
    struct sup s;
    if (emulated) { sup_init(&s, l, 1, 1); while (sup_step(&s) && now_ns() - t0 < 5000000000ull) {} }
    int st; waitpid(t, &st, 0);
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    if (WIFSIGNALED(st)) printf("    killed by %s at %.0f ms\n", sigabbrev_np(WTERMSIG(st)), (now_ns() - t0) / 1e6);
    if (emulated) { printf("    [supervisor: %ld notifications, %ld restarts seen, %ld abandoned waits]\n", s.notifs, s.restarts, s.abandoned); close(l); close(s.ep); }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    killable = argc > 1 && !strcmp(argv[1], "killable");
    if (killable) {
        struct sc ks[] = {
            { "SO_SNDTIMEO 1 s + SIGUSR1 handler (no SA_RESTART) at 200 ms", 0, 1000, 0, 0, 80, "203.0.113.1", {200, 0}, {SIGUSR1, 0} },
            { "SO_SNDTIMEO 1 s; SIGSTOP at 200 ms, SIGCONT at 600 ms", 0, 1000, 0, 0, 80, "203.0.113.1", {200, 600}, {SIGSTOP, SIGCONT} },
        };
        for (unsigned i = 0; i < 2; i++) { printf("%s\n  native:\n", ks[i].name); run(&ks[i], 0);
            printf("  user notification, WAIT_KILLABLE_RECV, same supervisor:\n"); run(&ks[i], 1); }
        return 0;
    }
    struct sc cs[] = {
        { "SIGUSR1 handler, no SA_RESTART, at 200 ms", 0, 0, 0, 0, 80, "203.0.113.1", {200, 0}, {SIGUSR1, 0} },
        { "SIGUSR1 SA_RESTART at 200 ms, then SIGUSR2 (no SA_RESTART) at 600 ms", 1, 0, 0, 0, 80, "203.0.113.1", {200, 600}, {SIGUSR1, SIGUSR2} },
        { "SO_SNDTIMEO 1 s + SIGUSR1 SA_RESTART at 200 ms", 1, 1000, 0, 0, 80, "203.0.113.1", {200, 0}, {SIGUSR1, 0} },
        { "SO_SNDTIMEO 500 ms, no signal; then again", 0, 500, 0, 1, 80, "203.0.113.1", {0, 0}, {0, 0} },
        { "SIGINT (default action) at 200 ms", 0, 0, 0, 0, 80, "203.0.113.1", {200, 0}, {SIGINT, 0} },
        { "non-blocking socket; then again", 0, 0, 1, 1, 80, "203.0.113.1", {0, 0}, {0, 0} },
        { "SIGUSR1 no SA_RESTART at 200 ms, then again with SO_SNDTIMEO 0: (blocks) -> SIGUSR2 at 500", 0, 0, 0, 1, 80, "203.0.113.1", {200, 500}, {SIGUSR1, SIGUSR2} },
        { "SIGSTOP at 200 ms, SIGCONT at 500 ms; SO_SNDTIMEO 1 s", 0, 1000, 0, 0, 80, "203.0.113.1", {200, 500}, {SIGSTOP, SIGCONT} },
        { "loopback, nothing listening", 0, 0, 0, 0, 1, "127.0.0.1", {0, 0}, {0, 0} },
    };
    for (unsigned i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        printf("%s\n  native:\n", cs[i].name); run(&cs[i], 0);
        printf("  user notification (emulated):\n"); run(&cs[i], 1);
    }
    return 0;
}
