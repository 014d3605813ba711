/* sigcatch: prints "ready", then waits for SIGUSR1 and SIGTERM; prints
 * "got USR1" when the first arrives and exits 5 when SIGTERM arrives. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, term;
static void on(int s) { if (s == SIGUSR1) usr1 = 1; else term = 1; }

int main(void) {
    signal(SIGUSR1, on);
    signal(SIGTERM, on);
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < 200 && !term; i++) {
        if (usr1 == 1) { printf("got USR1\n"); fflush(stdout); usr1 = 2; }
        usleep(50000);
    }
    return term ? 5 : 1;
}
