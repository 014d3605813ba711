/* connect+close to a loopback listener: untraced vs emulated through seccomp
 * user notification (with/without SYNC_WAKE_UP, supervisor blocked in RECV or
 * in epoll_wait), and CONTINUE (the notification round trip alone).
 * Rounds interleave the modes; each run is a fresh target process. */
#include "sup.h"
#include <pthread.h>
#include <sys/mman.h>
#include "ptrace_mode.h"

static int lsock; static struct sockaddr_in laddr;
static uint64_t *samples; static int K;

static void *drain(void *a) { (void)a; for (;;) { int c = accept4(lsock, NULL, NULL, SOCK_CLOEXEC); if (c >= 0) close(c); } return NULL; }
static void body(void *a) {
    (void)a;
    for (int i = 0; i < K; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        uint64_t t0 = now_ns();
        if (connect(s, (struct sockaddr *)&laddr, sizeof laddr) != 0) { perror("connect"); _exit(1); }
        close(s);
        samples[i] = now_ns() - t0;
    }
}
static int cmp(const void *a, const void *b) { uint64_t x = *(uint64_t *)a, y = *(uint64_t *)b; return x < y ? -1 : x > y; }

enum { UNTRACED, EMU_SYNC, EMU_SYNC_CACHED, EMU_NOSYNC, EMU_SYNC_EPOLL, EMU_NOSYNC_EPOLL, CONT_SYNC, PT_EMU, PT_PASS, NMODES };
static const char *names[] = { "untraced", "unotify emulate, SYNC_WAKE_UP, RECV-blocked", "  same, pidfd cached per thread", "unotify emulate, no SYNC, RECV-blocked",
                               "unotify emulate, SYNC_WAKE_UP, epoll_wait", "unotify emulate, no SYNC, epoll_wait", "unotify CONTINUE, SYNC_WAKE_UP, RECV-blocked", "ptrace: seccomp stop, same emulation, skip", "ptrace: seccomp stop, PTRACE_CONT (pass)" };

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 21; K = argc > 2 ? atoi(argv[2]) : 250;
    samples = mmap(NULL, K * 8, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    lsock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    laddr.sin_family = AF_INET; inet_pton(AF_INET, "127.0.0.1", &laddr.sin_addr);
    bind(lsock, (struct sockaddr *)&laddr, sizeof laddr); listen(lsock, 4096);
    socklen_t ll = sizeof laddr; getsockname(lsock, (struct sockaddr *)&laddr, &ll);
    pthread_t th; pthread_create(&th, NULL, drain, NULL);
    uint64_t *phs[7]; long nphs = 0; for (int q = 0; q < 7; q++) phs[q] = malloc(8 * 100000);
    uint64_t *all[NMODES]; int cnt[NMODES] = {0}; uint64_t *work[NMODES]; long nwork[NMODES] = {0};
    for (int m = 0; m < NMODES; m++) { all[m] = malloc(sizeof(uint64_t) * rounds * K); work[m] = malloc(sizeof(uint64_t) * rounds * K); }
    for (int r = 0; r < rounds; r++) for (int m = 0; m < NMODES; m++) {
        pid_t t; int l;
        if (m == UNTRACED) { t = fork(); if (t == 0) { body(NULL); _exit(0); } }
        else if (m == PT_EMU || m == PT_PASS) { run_ptrace(body, m == PT_PASS); t = -1; }
        else {
            t = spawn_target(0, body, NULL, &l);
            struct sup s; sup_init(&s, l, m == EMU_SYNC_EPOLL || m == EMU_NOSYNC_EPOLL, m != EMU_NOSYNC && m != EMU_NOSYNC_EPOLL);
            s.pass = (m == CONT_SYNC); s.cache_pidfd = (m == EMU_SYNC_CACHED);
            if (r > 0) { s.work = work[m] + nwork[m]; s.maxwork = K; }
            if (r > 0 && m == EMU_SYNC) for (int q = 0; q < 7; q++) s.phs[q] = phs[q] + nphs;
            while (s.notifs < K) sup_step(&s);
            if (r > 0) nwork[m] += s.nwork;
            if (r > 0 && m == EMU_SYNC) nphs += s.nph;
            if (s.cached_tid) close(s.cached_pidfd);
            close(l); close(s.ep);
        }
        int st = 0; if (t > 0) waitpid(t, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "mode %d failed\n", m); return 1; }
        if (r == 0) continue; /* warm-up round */
        memcpy(all[m] + cnt[m], samples, K * 8); cnt[m] += K;
    }
    uint64_t base = 0;
    for (int m = 0; m < NMODES; m++) {
        qsort(all[m], cnt[m], 8, cmp);
        uint64_t med = all[m][cnt[m] / 2], p10 = all[m][cnt[m] / 10], p90 = all[m][cnt[m] * 9 / 10];
        if (m == 0) base = med;
        printf("%-48s n=%d  median %6llu ns  (p10 %6llu, p90 %6llu)  %.2fx", names[m], cnt[m],
               (unsigned long long)med, (unsigned long long)p10, (unsigned long long)p90, (double)med / base);
        if (nwork[m]) { qsort(work[m], nwork[m], 8, cmp); printf("  [supervisor work, RECV return to SEND call: median %llu ns]", (unsigned long long)work[m][nwork[m] / 2]); }
        printf("\n");
    }
    const char *pn[] = { "pidfd_open+pidfd_getfd", "", "process_vm_readv", "ID_VALID", "SO_DOMAIN+fstat+restart lookup", "F_GETFL+F_SETFL", "connect (handshake)", "poll+2nd connect+F_SETFL+close" };
    (void)pn;
    const char *pn2[7] = { "pidfd_open+pidfd_getfd", "process_vm_readv", "ID_VALID", "SO_DOMAIN+fstat", "F_GETFL+F_SETFL(O_NONBLOCK)", "connect on borrowed socket", "poll+2nd connect+restore flags+close" };
    printf("supervisor phases (emulate, SYNC, uncached pidfd), medians:\n");
    for (int q = 0; q < 7; q++) { qsort(phs[q], nphs, 8, cmp); printf("  %-40s %6llu ns\n", pn2[q], (unsigned long long)phs[q][nphs / 2]); }
    return 0;
}
