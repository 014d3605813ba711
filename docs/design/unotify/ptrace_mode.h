/* The ptrace backend's path for the same loop, for a side-by-side figure:
 * RET_TRACE filter, seccomp stop, PTRACE_GET_SYSCALL_INFO, the same emulation
 * on a pidfd_getfd copy, skip with orig_rax = -1 and rax = result, PTRACE_CONT. */
#include <sys/ptrace.h>
#include <sys/user.h>
#include <linux/ptrace.h>

static int install_trace_filter(int nr) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
    return seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* Run fn in a traced child; emulate (or pass, if pass) its connects. */
static void run_ptrace(void (*fn)(void *), int pass) {
    pid_t t = fork();
    if (t == 0) {
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        if (install_trace_filter(SYS_connect) < 0) _exit(98);
        fn(NULL);
        _exit(0);
    }
    int st; waitpid(t, &st, 0);
    ptrace(PTRACE_SETOPTIONS, t, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, t, 0, 0);
    int pidfd = pidfd_open(t, 0);
    for (;;) {
        if (waitpid(t, &st, 0) < 0 || WIFEXITED(st) || WIFSIGNALED(st)) break;
        if (!(WIFSTOPPED(st) && st >> 8 == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8)))) {
            int sig = WIFSTOPPED(st) ? WSTOPSIG(st) : 0;
            ptrace(PTRACE_CONT, t, 0, sig == SIGTRAP ? 0 : sig);
            continue;
        }
        if (pass) { ptrace(PTRACE_CONT, t, 0, 0); continue; }
        struct ptrace_syscall_info info;
        ptrace(PTRACE_GET_SYSCALL_INFO, t, sizeof info, &info);
        int fd = (int)info.seccomp.args[0], len = (int)info.seccomp.args[2];
        int sock = pidfd_getfd(pidfd, fd, 0);
        unsigned char addr[128];
        struct iovec lo = { addr, len }, re = { (void *)info.seccomp.args[1], len };
        process_vm_readv(t, &lo, 1, &re, 1, 0);
        int dom = 0; socklen_t dl = sizeof dom; getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &dom, &dl);
        (void)ino_of(sock);
        int fl = fcntl(sock, F_GETFL), blocking = !(fl & O_NONBLOCK);
        if (blocking) fcntl(sock, F_SETFL, fl | O_NONBLOCK);
        int r = connect(sock, (struct sockaddr *)addr, len), e = r ? errno : 0;
        if (e == EINPROGRESS && blocking) {
            struct pollfd pf = { sock, POLLOUT, 0 };
            if (poll(&pf, 1, 0) == 1) { r = connect(sock, (struct sockaddr *)addr, len); e = r ? errno : 0; if (e == EISCONN) e = 0; }
        }
        if (blocking) fcntl(sock, F_SETFL, fl);
        close(sock);
        struct user_regs_struct regs;
        ptrace(PTRACE_GETREGS, t, 0, &regs);
        regs.orig_rax = -1; regs.rax = -e;
        ptrace(PTRACE_SETREGS, t, 0, &regs);
        ptrace(PTRACE_CONT, t, 0, 0);
    }
    close(pidfd);
}
