// inject PID [secs] [nnp]: make a running process install a seccomp
// user-notification filter (connect -> notify) in all its threads with TSYNC,
// take the listener with pidfd_getfd, detach, then supervise for `secs`:
// connect to port 1 -> EACCES, anything else -> CONTINUE.
// Only ONE thread (the thread-group leader) is ptraced; TSYNC reaches the rest.
// Prints stop_us = time from PTRACE_INTERRUPT to PTRACE_DETACH.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifndef SECCOMP_FILTER_FLAG_TSYNC_ESRCH
#define SECCOMP_FILTER_FLAG_TSYNC_ESRCH (1UL << 4)
#endif
static pid_t pid;
static double now_us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static void die(const char *what) { fprintf(stderr, "inject: %s: %s (errno %d)\n", what, strerror(errno), errno); exit(2); }

// Find a 0f 05 (syscall) in the target's [vdso]; any byte pair works as an entry point.
static unsigned long find_syscall_insn(void) {
  char path[64], line[512]; snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE *f = fopen(path, "r"); if (!f) die("open maps");
  unsigned long lo = 0, hi = 0;
  while (fgets(line, sizeof line, f)) if (strstr(line, "[vdso]")) { sscanf(line, "%lx-%lx", &lo, &hi); break; }
  fclose(f); if (!lo) { errno = ENOENT; die("no [vdso]"); }
  size_t n = hi - lo; unsigned char *buf = malloc(n);
  struct iovec l = {buf, n}, r = {(void *)lo, n};
  if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)n) die("read vdso");
  for (size_t i = 0; i + 1 < n; i++) if (buf[i] == 0x0f && buf[i + 1] == 0x05) { free(buf); return lo + i; }
  errno = ENOENT; die("no syscall insn in vdso");
  return 0;
}
static void waitstop(int *st) { if (waitpid(pid, st, __WALL) < 0) die("waitpid"); if (!WIFSTOPPED(*st)) { errno = ESRCH; die("target did not stop"); } }

static struct user_regs_struct saved;
static unsigned long sysinsn;
// Run one syscall in the stopped thread: rip -> syscall insn, orig_rax = -1 (no
// restart logic on our regs), PTRACE_SINGLESTEP, the SIGTRAP stop after the insn.
static long rsys(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  struct user_regs_struct r = saved;
  r.rip = sysinsn; r.rax = nr; r.orig_rax = -1;
  r.rdi = a1; r.rsi = a2; r.rdx = a3; r.r10 = a4; r.r8 = a5; r.r9 = a6;
  if (ptrace(PTRACE_SETREGS, pid, 0, &r) < 0) die("SETREGS");
  if (ptrace(PTRACE_SINGLESTEP, pid, 0, 0) < 0) die("SINGLESTEP");
  int st; waitstop(&st);
  if (WSTOPSIG(st) != SIGTRAP) { fprintf(stderr, "inject: unexpected stop sig %d\n", WSTOPSIG(st)); exit(2); }
  if (ptrace(PTRACE_GETREGS, pid, 0, &r) < 0) die("GETREGS");
  return (long)r.rax;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: inject PID [secs] [nnp]\n"); return 2; }
  pid = atoi(argv[1]); int secs = argc > 2 ? atoi(argv[2]) : 2; int nnp = argc > 3 ? atoi(argv[3]) : 0;
  struct sock_filter prog[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  if (ptrace(PTRACE_SEIZE, pid, 0, 0) < 0) die("PTRACE_SEIZE");
  sysinsn = find_syscall_insn();  // after SEIZE: its errno is the clearer one
  double t0 = now_us();
  if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0) die("PTRACE_INTERRUPT");
  int st; waitstop(&st);
  if (ptrace(PTRACE_GETREGS, pid, 0, &saved) < 0) die("GETREGS");
  long page = rsys(__NR_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  long err = 0, lfd = -1; int mine = -1; const char *stage = NULL;
  if (page < 0 && page > -4096) { err = -page; stage = "injected mmap"; goto restore; }
  struct sock_fprog fp = {sizeof prog / sizeof prog[0], (void *)(page + 16)};
  struct iovec l[2] = {{&fp, sizeof fp}, {prog, sizeof prog}}, r = {(void *)page, 16 + sizeof prog};
  l[0].iov_len = 16;
  if (process_vm_writev(pid, l, 2, &r, 1, 0) < 0) { err = errno; stage = "process_vm_writev"; goto unmap; }
  if (nnp) { long x = rsys(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); if (x < 0) { err = -x; stage = "injected prctl(NO_NEW_PRIVS)"; goto unmap; } }
  lfd = rsys(__NR_seccomp, SECCOMP_SET_MODE_FILTER,
             SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH | SECCOMP_FILTER_FLAG_NEW_LISTENER, page, 0, 0, 0);
  if (lfd < 0) { err = -lfd; stage = "injected seccomp"; goto unmap; }
  int pfd = syscall(SYS_pidfd_open, pid, 0);
  mine = pfd < 0 ? -1 : syscall(SYS_pidfd_getfd, pfd, (int)lfd, 0);
  if (mine < 0) { err = errno; stage = "pidfd_getfd"; }  // filter is in; listener stays in target: bad
  rsys(__NR_close, lfd, 0, 0, 0, 0, 0);
unmap:
  rsys(__NR_munmap, page, 4096, 0, 0, 0, 0);
restore:
  if (ptrace(PTRACE_SETREGS, pid, 0, &saved) < 0) die("restore SETREGS");
  if (ptrace(PTRACE_DETACH, pid, 0, 0) < 0) die("DETACH");
  double t1 = now_us();
  printf("inject: pid %d stop_us=%.0f listener=%d in-target-fd=%ld\n", pid, t1 - t0, mine, lfd);
  if (stage) { fprintf(stderr, "inject: %s: %s (errno %ld)\n", stage, strerror(err), err); return 2; }
  fflush(stdout);
  if (secs <= 0) return 0;
  // Trivial supervisor.
  struct seccomp_notif n; struct seccomp_notif_resp resp;
  long tids[256] = {0}, cnt[256] = {0}; int ntid = 0; long deny = 0, pass = 0;
  double end = now_us() + secs * 1e6;
  while (now_us() < end) {
    memset(&n, 0, sizeof n);
    if (ioctl(mine, SECCOMP_IOCTL_NOTIF_RECV, &n) < 0) { if (errno == EINTR || errno == ENOENT) continue; die("NOTIF_RECV"); }
    struct sockaddr_in sa = {0}; struct iovec a = {&sa, sizeof sa}, b = {(void *)n.data.args[1], sizeof sa};
    process_vm_readv(n.pid, &a, 1, &b, 1, 0);
    memset(&resp, 0, sizeof resp); resp.id = n.id;
    if (sa.sin_family == AF_INET && ntohs(sa.sin_port) == 1) { resp.error = -EACCES; deny++; }
    else { resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE; pass++; }
    ioctl(mine, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    int i; for (i = 0; i < ntid && tids[i] != n.pid; i++);
    if (i == ntid && ntid < 256) tids[ntid++] = n.pid;
    cnt[i]++;
  }
  printf("supervisor: %ld denied (port 1), %ld continued; notifications per tid:", deny, pass);
  for (int i = 0; i < ntid; i++) printf(" %ld:%ld", tids[i], cnt[i]);
  printf("\n");
  return 0;
}
