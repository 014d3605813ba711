/* h_fdtable MODE TCP_PORT UDP_PORT ATTEMPTS
 * Class 4 probe: a thread whose descriptor table is not the leader's.
 * Descriptor number 100 holds different sockets in the two tables; the
 * thread with the interesting one then connects/sends to 127.0.0.1 ports
 * the test's policy denies.
 * MODE:
 *   worker-unshares  a worker thread unshare(CLONE_FILES)es; in its table
 *                    fd 100 is a TCP socket (connect TCP_PORT) or a UDP
 *                    socket (sendto UDP_PORT); in the leader's it is an
 *                    AF_UNIX socket and a TCP socket respectively
 *   leader-unshares  the main thread unshares; the worker keeps the first
 *                    table, where fd 100 is the TCP/UDP socket
 * ATTEMPTS rounds of each. Prints connected=N sent=N. Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int tcp_port, udp_port;
static long attempts, connected, sent;
static pthread_barrier_t ready, done;

static struct sockaddr_in to(int port) {
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    return sa;
}

/* In the interesting table: fd 100 = a fresh socket of `type`. */
static void place(int type) {
    int s = socket(AF_INET, type, 0);
    dup2(s, 100);
    close(s);
}

/* The decoy in the other table. */
static void decoy(int type) {
    int s = type ? socket(AF_INET, SOCK_STREAM, 0) : socket(AF_UNIX, SOCK_STREAM, 0);
    dup2(s, 100);
    close(s);
}

static void attack(void) {
    struct sockaddr_in t = to(tcp_port);
    if (connect(100, (struct sockaddr *)&t, sizeof t) == 0) connected++;
}

static void attack_udp(void) {
    struct sockaddr_in u = to(udp_port);
    if (sendto(100, "x", 1, 0, (struct sockaddr *)&u, sizeof u) == 1) sent++;
}

static void *worker_unshares(void *arg) {
    (void)arg;
    unshare(CLONE_FILES);
    for (long i = 0; i < attempts; i++) {
        place(SOCK_STREAM);
        attack();
        place(SOCK_DGRAM);
        attack_udp();
    }
    return NULL;
}

static int phase; /* 0: tcp, 1: udp */
static void *worker_shared(void *arg) {
    (void)arg;
    for (int p = 0; p < 2; p++) {
        pthread_barrier_wait(&ready);
        for (long i = 0; i < attempts; i++) {
            if (p == 0) { place(SOCK_STREAM); attack(); }
            else { place(SOCK_DGRAM); attack_udp(); }
        }
        pthread_barrier_wait(&done);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: h_fdtable MODE TCP_PORT UDP_PORT ATTEMPTS\n"); return 2; }
    tcp_port = atoi(argv[2]);
    udp_port = atoi(argv[3]);
    attempts = atol(argv[4]);
    pthread_t t;
    if (!strcmp(argv[1], "worker-unshares")) {
        decoy(0);
        pthread_create(&t, NULL, worker_unshares, NULL);
        pthread_join(t, NULL);
    } else if (!strcmp(argv[1], "leader-unshares")) {
        pthread_barrier_init(&ready, NULL, 2);
        pthread_barrier_init(&done, NULL, 2);
        pthread_create(&t, NULL, worker_shared, NULL);
        unshare(CLONE_FILES);
        for (phase = 0; phase < 2; phase++) {
            decoy(phase);
            pthread_barrier_wait(&ready);
            pthread_barrier_wait(&done);
        }
        pthread_join(t, NULL);
    } else {
        fprintf(stderr, "bad mode\n");
        return 2;
    }
    printf("connected=%ld sent=%ld\n", connected, sent);
    return 0;
}
