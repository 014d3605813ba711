/* "h_parent PROG ARGS...": in a process group of its own, counts the
 * signals it receives while PROG (its child) runs, then prints
 * "USR1=a USR2=b HUP=c TERM=d INT=e status=S" (S: exit code, 128+N for a
 * signal). The child is killed if it has not exited within 20 s. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got[65];

static void count(int sig) { got[sig]++; }

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    setpgid(0, 0);
    int sigs[] = {SIGUSR1, SIGUSR2, SIGHUP, SIGTERM, SIGINT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count;
    sa.sa_flags = SA_RESTART;
    for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaction(sigs[i], &sa, NULL);
    pid_t pid = fork();
    if (pid < 0)
        return 3;
    if (pid == 0) {
        for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++)
            signal(sigs[i], SIG_DFL);
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    int st = 0;
    for (int i = 0; i < 2000; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (i == 1999) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
        usleep(10000);
    }
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("USR1=%d USR2=%d HUP=%d TERM=%d INT=%d status=%d\n", got[SIGUSR1], got[SIGUSR2],
           got[SIGHUP], got[SIGTERM], got[SIGINT], code);
    return 0;
}
