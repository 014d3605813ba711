/* flipper ALLOWED_PORT DENIED_PORT ATTEMPTS
 * TOCTOU attacker. One shared struct sockaddr_in (127.0.0.1) is passed to
 * connect() by the main thread while a sibling thread keeps flipping its
 * sin_port between ALLOWED_PORT and DENIED_PORT (volatile writes, tight loop,
 * until the main thread is done). The main thread does ATTEMPTS rounds of
 * socket(); connect(fd, &shared); close() (with SO_LINGER {1,0}, so the close
 * sends RST and leaves no TIME_WAIT). Each connect also has a 2 s send timeout
 * (SO_SNDTIMEO) so a stuck connect cannot hang the program.
 * Prints, one key=value per line:
 *   ok=N               connects that returned 0
 *   refused=N          connects that failed with ECONNREFUSED
 *   other=N            connects that failed otherwise
 *   first_other=NAME   errno of the first such failure (only when other > 0)
 *   landed_denied=N    successful connects whose getpeername() port is
 *                      DENIED_PORT (what this program believes; the listener
 *                      of the test is the real judge)
 * Exits 0; usage errors exit 2. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static volatile struct sockaddr_in shared;
static volatile int stop;
static unsigned short allowed_port, denied_port; /* network byte order */

static void *flip(void *arg) {
    (void)arg;
    /* Bounded by the main thread setting stop once its attempts are done. */
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        shared.sin_port = allowed_port;
        shared.sin_port = denied_port;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: flipper ALLOWED_PORT DENIED_PORT ATTEMPTS\n"); return 2; }
    int a = atoi(argv[1]), d = atoi(argv[2]);
    long attempts = atol(argv[3]);
    if (a <= 0 || a > 65535 || d <= 0 || d > 65535 || attempts < 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    allowed_port = htons(a);
    denied_port = htons(d);
    shared.sin_family = AF_INET;
    shared.sin_port = allowed_port;
    shared.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    pthread_t t;
    if (pthread_create(&t, NULL, flip, NULL)) { fprintf(stderr, "pthread_create failed\n"); return 2; }

    long ok = 0, refused = 0, other = 0, landed_denied = 0;
    int first_other = 0;
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    struct timeval tv = { .tv_sec = 2 };
    for (long i = 0; i < attempts; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            if (!first_other) first_other = errno;
            other++;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&shared, sizeof shared) == 0) {
            ok++;
            struct sockaddr_in peer;
            socklen_t pl = sizeof peer;
            if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0 && peer.sin_port == denied_port)
                landed_denied++;
        } else if (errno == ECONNREFUSED) {
            refused++;
        } else {
            if (!first_other) first_other = errno;
            other++;
        }
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);

    printf("ok=%ld\nrefused=%ld\nother=%ld\n", ok, refused, other);
    if (other) printf("first_other=%s\n", strerrorname_np(first_other));
    printf("landed_denied=%ld\n", landed_denied);
    fflush(stdout);
    return 0;
}
