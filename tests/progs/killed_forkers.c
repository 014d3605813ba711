/* Parents killed while they fork: each of N rounds forks a parent that forks
 * 4 children, and SIGKILLs the parent at once (so some die in their fork
 * stop, before a ptrace tracer has read the fork event). Each child writes
 * DIR/<its pid> and waits in pause(). The main program writes its pid to
 * DIR/done when the rounds are over, and exits.
 * usage: killed_forkers N DIR */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void mark(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0)
        close(fd);
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    int n = atoi(argv[1]);
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            for (int k = 0; k < 4; k++) {
                if (fork() == 0) {
                    char me[32];
                    snprintf(me, sizeof me, "%d", (int)getpid());
                    mark(argv[2], me);
                    pause();
                    _exit(0);
                }
            }
            pause();
            _exit(0);
        }
        usleep(i % 50);
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/done.tmp", argv[2]);
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f, "%d", (int)getpid());
    fclose(f);
    char done[4096];
    snprintf(done, sizeof done, "%s/done", argv[2]);
    return rename(path, done) == 0 ? 0 : 1;
}
