/* A non-IP socket given an IP address (the kernel only refuses it) while a
 * sibling thread dup2()s TCP sockets onto its descriptor number: a call
 * passed to the kernel would read the descriptor again and could connect
 * the TCP socket, unchecked.
 * usage: h_unix_swap errnos            -> the errnos of connect, bind and
 *                                         sendto of 127.0.0.1:9 on AF_UNIX
 *        h_unix_swap swap PORT SECS    -> connects to 127.0.0.1:PORT on an
 *                                         AF_UNIX socket at fd 100 for SECS
 *                                         while TCP sockets are swapped in */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FDN 100
static atomic_int stop;

static void *swapper(void *x) {
    (void)x;
    while (!atomic_load(&stop)) {
        int t = socket(AF_INET, SOCK_STREAM, 0);
        if (t >= 0) {
            dup2(t, FDN);
            close(t);
        }
    }
    return NULL;
}

static const char *name(int r) {
    if (r == 0)
        return "0";
    switch (errno) {
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EISCONN: return "EISCONN";
    default: return strerror(errno);
    }
}

int main(int argc, char **argv) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (argc == 2 && !strcmp(argv[1], "errnos")) {
        a.sin_port = htons(9);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        printf("connect=%s ", name(connect(s, (struct sockaddr *)&a, sizeof a)));
        printf("bind=%s ", name(bind(s, (struct sockaddr *)&a, sizeof a)));
        int d = socket(AF_UNIX, SOCK_DGRAM, 0);
        printf("sendto=%s\n", name((int)sendto(d, "x", 1, 0, (struct sockaddr *)&a, sizeof a)));
        return 0;
    }
    if (argc != 4 || strcmp(argv[1], "swap"))
        return 2;
    a.sin_port = htons(atoi(argv[2]));
    pthread_t th;
    pthread_create(&th, NULL, swapper, NULL);
    time_t end = time(NULL) + atoi(argv[3]);
    long n = 0, connected = 0;
    while (time(NULL) < end && n < 2000000) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0)
            continue;
        dup2(s, FDN);
        close(s);
        int r = connect(FDN, (struct sockaddr *)&a, sizeof a);
        if (r == 0 || errno == EINPROGRESS)
            connected++;
        n++;
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    printf("connects=%ld connected=%ld\n", n, connected);
    return 0;
}
