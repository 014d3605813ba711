/* ADDFD with SETFD during a connect notification: the supervisor's own socket
 * (made and connected here, "host side") replaces the program's socket at the
 * same number, keeping FD_CLOEXEC and O_NONBLOCK as the program had them; then
 * the connect returns 0. (Issue 16's hand-over.) */
#include "sup.h"
static struct sockaddr_in dst;
static void body(void *a) {
    (void)a;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct stat before; fstat(s, &before);
    struct sockaddr_in fake = { .sin_family = AF_INET, .sin_port = htons(9) }; inet_pton(AF_INET, "10.255.255.1", &fake.sin_addr);
    int r = connect(s, (struct sockaddr *)&fake, sizeof fake);
    struct stat after; fstat(s, &after);
    struct sockaddr_in peer; socklen_t pl = sizeof peer; getpeername(s, (struct sockaddr *)&peer, &pl);
    char b[32]; inet_ntop(AF_INET, &peer.sin_addr, b, sizeof b);
    printf("program: connect(fd %d) -> %d; inode %lu -> %lu; peer %s:%d; FD_CLOEXEC %d O_NONBLOCK %d\n", s, r,
           before.st_ino, after.st_ino, b, ntohs(peer.sin_port), !!(fcntl(s, F_GETFD) & FD_CLOEXEC), !!(fcntl(s, F_GETFL) & O_NONBLOCK));
}
int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int ls = socket(AF_INET, SOCK_STREAM, 0); dst.sin_family = AF_INET; inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    bind(ls, (struct sockaddr *)&dst, sizeof dst); listen(ls, 8); socklen_t dl = sizeof dst; getsockname(ls, (struct sockaddr *)&dst, &dl);
    int l; pid_t t = spawn_target(0, body, NULL, &l);
    struct seccomp_notif n = {0};
    ioctl(l, SECCOMP_IOCTL_NOTIF_RECV, &n);
    int pidfd = pidfd_open(n.pid, PIDFD_THREAD);
    int theirs = pidfd_getfd(pidfd, (int)n.data.args[0], 0);
    int fl = fcntl(theirs, F_GETFL);
    char p[64], line[256]; snprintf(p, sizeof p, "/proc/%d/fdinfo/%d", n.pid, (int)n.data.args[0]);
    FILE *f = fopen(p, "r"); unsigned long oflags = 0;
    while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "flags:", 6)) oflags = strtoul(line + 6, NULL, 8);
    if (f) fclose(f);
    int mine = socket(AF_INET, SOCK_STREAM, 0);
    connect(mine, (struct sockaddr *)&dst, sizeof dst);
    if (fl & O_NONBLOCK) fcntl(mine, F_SETFL, O_NONBLOCK);
    struct seccomp_notif_addfd a = { .id = n.id, .flags = SECCOMP_ADDFD_FLAG_SETFD, .srcfd = mine,
                                     .newfd = (uint32_t)n.data.args[0], .newfd_flags = (oflags & O_CLOEXEC) ? O_CLOEXEC : 0 };
    int r = ioctl(l, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
    printf("supervisor: fdinfo flags %#lo (O_CLOEXEC %d); ADDFD(SETFD) -> %d\n", oflags, !!(oflags & O_CLOEXEC), r);
    struct seccomp_notif_resp resp = { .id = n.id, .val = 0, .error = 0 };
    ioctl(l, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    close(mine); close(theirs); close(pidfd);
    waitpid(t, NULL, 0);
    return 0;
}
