/* Signals its parent three ways: kill(USR1), tgkill(USR2), sigqueue(HUP).
 * Prints "sent" and exits 0 (a signal aimed at it instead would kill it). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    pid_t pp = getppid();
    union sigval v = {.sival_int = 42};
    if (kill(pp, SIGUSR1) < 0 || syscall(SYS_tgkill, pp, pp, SIGUSR2) < 0 ||
        sigqueue(pp, SIGHUP, v) < 0) {
        perror("h_killparent");
        return 1;
    }
    usleep(100000);
    printf("sent\n");
    return 0;
}
