/* Prints what this process inherited: SigIgn and SigBlk from
 * /proc/self/status, and whether descriptor 2 is open. Signals 32 and 33
 * are left out of both masks: glibc reserves them (SIGCANCEL, SIGSETXID)
 * and sets them up in every process it starts, so what a parent had there
 * never reaches a glibc program anyway.
 * "h_sigstate wait MS": then prints "ready", sleeps MS milliseconds
 * (through interruptions) and exits 7. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    if (!f)
        return 2;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "SigIgn:", 7) || !strncmp(line, "SigBlk:", 7)) {
            unsigned long long m = strtoull(line + 7, NULL, 16) & ~(3ULL << 31);
            printf("%.7s\t%016llx\n", line, m);
        }
    fclose(f);
    printf("fd2=%s\n", fcntl(2, F_GETFD) < 0 ? "closed" : "open");
    if (argc > 2 && !strcmp(argv[1], "wait")) {
        long ms = atol(argv[2]);
        printf("ready\n");
        fflush(stdout);
        struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&t, &t) < 0 && errno == EINTR)
            ;
        return 7;
    }
    return 0;
}
