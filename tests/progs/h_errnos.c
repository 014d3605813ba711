/* h_errnos TCP_PORT UDP_PORT
 * Class 15 probe: odd but legal (or refused) arguments whose errno must be
 * the same traced and untraced. 127.0.0.1:TCP_PORT accepts, and
 * 127.0.0.1:UDP_PORT takes datagrams. Prints name=OK|<ERRNO>|<count>, one per
 * line; the memfd_secret case last (see the test). Exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int tcp_port, udp_port;

static void show(const char *name, long r) {
    if (r < 0) printf("%s=%s\n", name, strerrorname_np(errno));
    else if (r == 0) printf("%s=OK\n", name);
    else printf("%s=%ld\n", name, r);
    fflush(stdout);
}

static struct sockaddr_in v4(int port) {
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static struct sockaddr_in6 mapped(int port) {
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &sa.sin6_addr);
    return sa;
}

static long sendmsg32(int fd, int port) {
    /* A 32-bit msghdr with an IP_TTL control message, through int 0x80. */
    uint32_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (m == MAP_FAILED) return -1;
    char *base = (char *)m;
    struct sockaddr_in *sa = (void *)(base + 256);
    *sa = v4(port);
    memcpy(base + 512, "ping", 4);
    uint32_t *iov = (void *)(base + 600);
    iov[0] = (uint32_t)(uintptr_t)(base + 512);
    iov[1] = 4;
    uint32_t *c = (void *)(base + 700);
    c[0] = 16; c[1] = IPPROTO_IP; c[2] = IP_TTL; c[3] = 9;
    m[0] = (uint32_t)(uintptr_t)sa; m[1] = sizeof *sa;
    m[2] = (uint32_t)(uintptr_t)iov; m[3] = 1;
    m[4] = (uint32_t)(uintptr_t)c; m[5] = 16; m[6] = 0;
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(370), "b"(fd), "c"(m), "d"(0) : "memory");
    if (ret < 0) { errno = -ret; return -1; }
    return ret;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: h_errnos TCP_PORT UDP_PORT\n"); return 2; }
    tcp_port = atoi(argv[1]);
    udp_port = atoi(argv[2]);
    int fd;
    struct sockaddr_in a4 = v4(tcp_port);
    struct sockaddr_in6 a6 = mapped(tcp_port);

    fd = socket(AF_INET, SOCK_STREAM, 0);
    show("tcp4_connect_v4mapped", connect(fd, (void *)&a6, sizeof a6)); close(fd);
    fd = socket(AF_INET6, SOCK_STREAM, 0);
    show("tcp6_connect_sockaddr_in", connect(fd, (void *)&a4, sizeof a4)); close(fd);
    fd = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in u4 = v4(udp_port);
    show("udp6_connect_sockaddr_in", connect(fd, (void *)&u4, sizeof u4)); close(fd);
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in6 u6 = mapped(udp_port);
    show("udp4_sendto_v4mapped", sendto(fd, "x", 1, 0, (void *)&u6, sizeof u6)); close(fd);

    struct sockaddr_in un = { .sin_family = AF_UNSPEC };
    fd = socket(AF_INET, SOCK_STREAM, 0);
    show("bind_unspec_any", bind(fd, (void *)&un, sizeof un)); close(fd);
    un.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    show("bind_unspec_loopback", bind(fd, (void *)&un, sizeof un)); close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    show("bind_short", bind(fd, (void *)&un, 8)); close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    show("connect_null_16", connect(fd, NULL, 16)); close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    show("connect_null_0", connect(fd, NULL, 0)); close(fd);

    /* msg_namelen above 128: the kernel cuts it to 128. */
    char big[200] = { 0 };
    memcpy(big, &u4, sizeof u4);
    struct iovec iov = { .iov_base = "x", .iov_len = 1 };
    struct msghdr mh = { .msg_name = big, .msg_namelen = sizeof big, .msg_iov = &iov, .msg_iovlen = 1 };
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    show("sendmsg_namelen_200", sendmsg(fd, &mh, 0));
    mh.msg_namelen = (socklen_t)-1;
    show("sendmsg_namelen_negative", sendmsg(fd, &mh, 0));
    close(fd);

    /* Garbage in the upper 32 bits of int arguments. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    show("connect_len_upper_bits", syscall(SYS_connect, fd, &a4, 0xdeadbeef00000000UL | sizeof a4)); close(fd);
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    show("sendto_flags_upper_bits", syscall(SYS_sendto, fd, "x", 1, 0xffffffff00000000UL, &u4, 0x1234567800000000UL | sizeof u4));
    /* sendmmsg: vlen is an unsigned int, and the kernel caps it at 1024. */
    static struct mmsghdr vec[1100];
    for (int i = 0; i < 1100; i++) {
        vec[i].msg_hdr.msg_name = &u4;
        vec[i].msg_hdr.msg_namelen = sizeof u4;
        vec[i].msg_hdr.msg_iov = &iov;
        vec[i].msg_hdr.msg_iovlen = 1;
    }
    show("sendmmsg_vlen_upper_bits", syscall(SYS_sendmmsg, fd, vec, 0x100000003UL, 0));
    show("sendmmsg_vlen_huge", syscall(SYS_sendmmsg, fd, vec, 0xffffffffUL, 0));
    show("sendmsg32_with_cmsg", sendmsg32(fd, udp_port));
    close(fd);

    /* An address in memfd_secret memory (readable only by the program). */
    int sfd = syscall(SYS_memfd_secret, 0);
    struct sockaddr_in *sec = NULL;
    if (sfd >= 0 && ftruncate(sfd, 4096) == 0) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
        if (m != MAP_FAILED) sec = m;
    }
    if (!sec) { printf("secret=unavailable\n"); return 0; }
    *sec = a4;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    show("secret_connect", connect(fd, (void *)sec, sizeof *sec)); close(fd);
    return 0;
}
