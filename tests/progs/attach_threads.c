/* attach_threads N PORT_A PORT_B INTERVAL_MS: N threads connect in a loop
 * while the program is attached (issue 15). Each round a thread makes a
 * blocking TCP connect to 127.0.0.1:PORT_A, then one to 127.0.0.1:PORT_B
 * (each on a fresh socket, closed with an RST so that no TIME_WAIT piles up),
 * then sleeps INTERVAL_MS. It counts every outcome: A that worked, B that
 * worked, B refused with EACCES, and anything else ("other", with the
 * first such errno and port), plus the rounds begun after "mark".
 *
 * Prints "ready pid=P threads=N" once every thread has done a round, then
 * "tids T1 T2 ...". Reads commands on stdin:
 *   mark   rounds begun from now on count as "post": prints "marked"
 *   rounds "rounds min=M": the fewest rounds any thread has finished
 *   post   "post min=M": the fewest post rounds any thread has finished
 *   stop   the threads finish their round; prints one line per thread
 *          "thread I tid=T rounds=R a_ok=.. b_ok=.. b_eacces=.. other=..
 *          b_ok_after_eacces=.. post_a=.. post_a_ok=.. post_b=..
 *          post_b_eacces=.. first_other=NAME@PORT", then "done"; exits 0.
 * Exits 3 after 120 s (a test that never says stop). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXT 256

struct counts {
    pid_t tid;
    long rounds, a_ok, b_ok, b_eacces, other, b_ok_after_eacces;
    long post_a, post_a_ok, post_b, post_b_eacces;
    int first_other, first_other_port;
};

static struct counts c[MAXT];
static int nthreads, port_a, port_b, interval_ms;
static volatile int marked, stopping;

/* One connect; 0 or the errno. */
static int connect_to(int port) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno;
    int r = connect(s, (struct sockaddr *)&sa, sizeof sa) < 0 ? errno : 0;
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(s);
    return r;
}

static void other(struct counts *k, int err, int port) {
    if (k->other++ == 0) {
        k->first_other = err;
        k->first_other_port = port;
    }
}

static void *loop(void *arg) {
    struct counts *k = arg;
    k->tid = gettid();
    while (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
        int post = __atomic_load_n(&marked, __ATOMIC_ACQUIRE);
        int e = connect_to(port_a);
        if (e == 0)
            k->a_ok++;
        else
            other(k, e, port_a);
        if (post) {
            k->post_a++;
            k->post_a_ok += e == 0;
        }
        e = connect_to(port_b);
        if (e == 0) {
            k->b_ok++;
            k->b_ok_after_eacces += k->b_eacces > 0;
        } else if (e == EACCES)
            k->b_eacces++;
        else
            other(k, e, port_b);
        if (post) {
            k->post_b_eacces += e == EACCES;
            __atomic_add_fetch(&k->post_b, 1, __ATOMIC_RELEASE);
        }
        __atomic_add_fetch(&k->rounds, 1, __ATOMIC_RELEASE);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = interval_ms * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: attach_threads N PORT_A PORT_B INTERVAL_MS\n");
        return 2;
    }
    nthreads = atoi(argv[1]);
    port_a = atoi(argv[2]);
    port_b = atoi(argv[3]);
    interval_ms = atoi(argv[4]);
    if (nthreads < 1 || nthreads > MAXT)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120);
    pthread_t t[MAXT];
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, loop, &c[i])) {
            perror("pthread_create");
            return 2;
        }
    /* Ready once every thread has done a round (bounded: 20 s). */
    for (int waited = 0;; waited++) {
        int all = 1;
        for (int i = 0; i < nthreads; i++)
            all &= __atomic_load_n(&c[i].rounds, __ATOMIC_ACQUIRE) > 0;
        if (all)
            break;
        if (waited > 20000) {
            printf("never ready\n");
            return 3;
        }
        usleep(1000);
    }
    printf("ready pid=%d threads=%d\ntids", getpid(), nthreads);
    for (int i = 0; i < nthreads; i++)
        printf(" %d", c[i].tid);
    printf("\n");
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "mark", 4)) {
            __atomic_store_n(&marked, 1, __ATOMIC_RELEASE);
            printf("marked\n");
        } else if (!strncmp(line, "rounds", 6)) {
            long min = -1;
            for (int i = 0; i < nthreads; i++) {
                long r = __atomic_load_n(&c[i].rounds, __ATOMIC_ACQUIRE);
                if (min < 0 || r < min)
                    min = r;
            }
            printf("rounds min=%ld\n", min);
        } else if (!strncmp(line, "post", 4)) {
            long min = -1;
            for (int i = 0; i < nthreads; i++) {
                long p = __atomic_load_n(&c[i].post_b, __ATOMIC_ACQUIRE);
                if (min < 0 || p < min)
                    min = p;
            }
            printf("post min=%ld\n", min);
        } else if (!strncmp(line, "stop", 4))
            break;
    }
    __atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < nthreads; i++) {
        struct counts *k = &c[i];
        printf("thread %d tid=%d rounds=%ld a_ok=%ld b_ok=%ld b_eacces=%ld other=%ld "
               "b_ok_after_eacces=%ld post_a=%ld post_a_ok=%ld post_b=%ld post_b_eacces=%ld "
               "first_other=%s@%d\n",
               i, k->tid, k->rounds, k->a_ok, k->b_ok, k->b_eacces, k->other, k->b_ok_after_eacces,
               k->post_a, k->post_a_ok, k->post_b, k->post_b_eacces,
               k->other ? strerrorname_np(k->first_other) : "none", k->first_other_port);
    }
    printf("done\n");
    return 0;
}
