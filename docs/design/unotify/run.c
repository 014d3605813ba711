/* run [-d PORT] -- CMD...: run CMD under a connect user-notification filter,
 * emulating connects (port PORT refused with EACCES), as a subreaper; exit when
 * the filter has no users and every descendant is reaped, with CMD's status. */
#include "sup.h"
#include <sys/prctl.h>

static void exec_it(void *argv) { char **a = argv; execvp(a[0], a); perror("execvp"); _exit(127); }

int main(int argc, char **argv) {
    int i = 1, deny = 0;
    if (i + 1 < argc && !strcmp(argv[i], "-d")) { deny = atoi(argv[i + 1]); i += 2; }
    if (i < argc && !strcmp(argv[i], "--")) i++;
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    int l; pid_t main_pid = spawn_target(0, exec_it, argv + i, &l);
    /* After the fork (the flag is per mm and a child inherits it, which would stop our own
     * pidfd_getfd): the program (same uid) can no longer ptrace us or pidfd_getfd the listener. */
    if (!getenv("KEEP_DUMPABLE")) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    struct sup s; sup_init(&s, l, 1, 1); s.deny_port = deny; s.verbose = !getenv("QUIET");
    while (sup_step(&s)) {}
    /* no process holds the filter any more: reap the rest (orphans came to us) */
    int st = 0, main_st = 0; pid_t p;
    while ((p = waitpid(-1, &st, 0)) > 0) if (p == main_pid) main_st = st;
    fprintf(stderr, "run: filter has no users; %ld notifications (%ld emulated, %ld continued, %ld replies lost to signals, %ld restarts seen)\n", s.notifs, s.emulated, s.continued, s.lost, s.restarts);
    return WIFEXITED(main_st) ? WEXITSTATUS(main_st) : 128 + WTERMSIG(main_st);
}
