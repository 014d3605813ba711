/* Is the listener's POLLHUP raised at the last user's exit, or only at its reaping? */
#include "sup.h"
static void quit(void *a) { (void)a; }
int main(void) {
    int l; pid_t t = spawn_target(0, quit, NULL, &l);
    usleep(100000);
    siginfo_t si = {0};
    waitid(P_PID, t, &si, WEXITED | WNOWAIT); /* exited, still a zombie */
    struct pollfd pf = { l, POLLIN, 0 };
    int r = poll(&pf, 1, 0);
    printf("zombie (not reaped): poll -> %d revents %#x\n", r, pf.revents);
    waitpid(t, NULL, 0);
    pf.revents = 0; r = poll(&pf, 1, 0);
    printf("after reaping:       poll -> %d revents %#x\n", r, pf.revents);
    return 0;
}
