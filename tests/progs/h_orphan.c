/* Forks a child that prints its pid and waits (up to 30 s) with the
 * default disposition for every signal; the parent exits 0 at once. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 3;
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        printf("%d\n", getpid());
        fflush(stdout);
        sleep(30);
        _exit(0);
    }
    return 0;
}
