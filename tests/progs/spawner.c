/* spawner PROG [ARGS...]
 * Runs PROG twice: once with posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK))
 * and once with an explicit vfork()+execv(), waits for each and prints
 * "posix_spawn exit=N" and "vfork exit=N". Exits 0 if both exited 0. */
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: spawner PROG [ARGS...]\n"); return 2; }
    pid_t pid;
    int st, rc = 0;
    if (posix_spawn(&pid, argv[1], NULL, NULL, argv + 1, environ)) { perror("posix_spawn"); return 2; }
    waitpid(pid, &st, 0);
    printf("posix_spawn exit=%d\n", WEXITSTATUS(st));
    fflush(stdout);
    rc |= WEXITSTATUS(st);
    pid = vfork();
    if (pid == 0) { execv(argv[1], argv + 1); _exit(127); }
    waitpid(pid, &st, 0);
    printf("vfork exit=%d\n", WEXITSTATUS(st));
    rc |= WEXITSTATUS(st);
    return rc ? 1 : 0;
}
