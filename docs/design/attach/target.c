// target: N threads (default 4) each connect() every 10 ms, alternating
// 127.0.0.1:1 and 127.0.0.1:2 (both closed: ECONNREFUSED untraced).
// Prints per-thread errno counts each second. argv[2]=1: PR_SET_DUMPABLE(0).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#define MAXT 64
static int nt = 4;
static long refused[MAXT], eacces[MAXT], other[MAXT];
static void *loop(void *a) {
  long i = (long)a;
  for (int k = 0;; k++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(1 + (k & 1))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(s, (void *)&sa, sizeof sa);
    if (r < 0 && errno == ECONNREFUSED) __atomic_add_fetch(&refused[i], 1, 0);
    else if (r < 0 && errno == EACCES) __atomic_add_fetch(&eacces[i], 1, 0);
    else __atomic_add_fetch(&other[i], 1, 0);
    close(s);
    usleep(10000);
  }
}
int main(int argc, char **argv) {
  if (argc > 1) nt = atoi(argv[1]);
  if (argc > 2 && atoi(argv[2])) prctl(PR_SET_DUMPABLE, 0);
  setvbuf(stdout, NULL, _IOLBF, 0);
  pthread_t t;
  for (long i = 0; i < nt; i++) pthread_create(&t, NULL, loop, (void *)i);
  for (;;) {  // main thread sleeps in nanosleep: the injected thread is in a syscall
    sleep(1);
    printf("target:");
    for (int i = 0; i < nt; i++) printf(" t%d refused=%ld eacces=%ld other=%ld;", i, refused[i], eacces[i], other[i]);
    printf("\n");
  }
}
