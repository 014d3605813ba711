/* h_raw PORT [ADDR] | h_raw icmp sendto|connect
 * Tries every way this probe knows to put a hand-made packet on the wire,
 * past connect/send rules: each sends one UDP/IPv4 datagram to
 * ADDR:PORT (default 127.0.0.1; ADDR is also the packet's source) whose
 * destination is only in the payload.
 *   hdrincl    socket(AF_INET, SOCK_RAW|CLOEXEC|NONBLOCK, IPPROTO_RAW) (implies IP_HDRINCL)
 *   icmp_hdr   socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) + setsockopt(IP_HDRINCL)
 *   syscall    syscall(SYS_socket, AF_INET | 1<<32, SOCK_RAW, IPPROTO_RAW): upper bits set
 *   int80      i386 socketcall(SOCKET, AF_INET, SOCK_RAW, IPPROTO_RAW) by int 0x80
 *   int80_sock i386 socket(AF_INET, SOCK_RAW, IPPROTO_RAW) (nr 359) by int 0x80
 *   pkt_dgram  socket(AF_PACKET, SOCK_DGRAM|CLOEXEC, ETH_P_IP), sent on lo
 *   pkt_raw    socket(AF_PACKET, SOCK_RAW|NONBLOCK, 0), sent on lo with an Ethernet header
 * (The test counts the raw IP ones at its UDP listener; the packet-socket
 * frames sent on lo were not delivered to it on the kernel this was
 * written on, so for those only socket() and sendto() results count.)
 * It also creates (without sending): raw6 (AF_INET6, SOCK_RAW, IPPROTO_UDP),
 * inet_pkt (AF_INET, SOCK_PACKET), xdp (AF_XDP, SOCK_RAW).
 * Prints NAME=sent, NAME=created, or NAME=ERRNO-NAME (what failed), one per line.
 *
 * icmp mode: an unprivileged ICMP "ping" socket (SOCK_DGRAM, IPPROTO_ICMP)
 * sends one echo request to 127.0.0.1, by sendto or by connect + send.
 * Prints socket=..., send=..., reply=yes|no. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned short port;
static struct in_addr dst; /* ADDR: 127.0.0.1 unless given */

static const char *ename(int e) {
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

/* An IPv4 header + UDP header + payload to 127.0.0.1:port; its length. */
static size_t packet(unsigned char *buf, const char *payload) {
    size_t plen = strlen(payload);
    struct iphdr *ip = (struct iphdr *)buf;
    struct udphdr *udp = (struct udphdr *)(buf + sizeof *ip);
    memset(buf, 0, sizeof *ip + sizeof *udp);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons(sizeof *ip + sizeof *udp + plen);
    ip->saddr = dst.s_addr;
    ip->daddr = dst.s_addr;
    udp->source = htons(9);
    udp->dest = htons(port);
    udp->len = htons(sizeof *udp + plen);
    udp->check = 0; /* no checksum: valid for UDP over IPv4 */
    memcpy(buf + sizeof *ip + sizeof *udp, payload, plen);
    /* The kernel fills the IP checksum of an IP_HDRINCL packet, not of a
     * packet socket's: compute it. */
    unsigned long sum = 0;
    for (int i = 0; i < 10; i++) sum += ((unsigned short *)buf)[i];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    ip->check = (unsigned short)~sum;
    return sizeof *ip + sizeof *udp + plen;
}

/* Send the packet on a raw IP socket; report NAME=sent or the errno. */
static void send_ip(const char *name, int fd) {
    if (fd < 0) { printf("%s=%s\n", name, ename(errno)); return; }
    unsigned char buf[128];
    size_t n = packet(buf, name);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = dst};
    if (sendto(fd, buf, n, 0, (struct sockaddr *)&to, sizeof to) < 0)
        printf("%s=send:%s\n", name, ename(errno));
    else
        printf("%s=sent\n", name);
    close(fd);
}

/* Send the packet on a packet socket, out of lo (with an Ethernet header
 * of zero addresses when `eth`). */
static void send_lo(const char *name, int fd, int eth) {
    if (fd < 0) { printf("%s=%s\n", name, ename(errno)); return; }
    unsigned char buf[160];
    size_t off = eth ? 14 : 0;
    memset(buf, 0, off);
    if (eth) { buf[12] = 0x08; buf[13] = 0x00; }
    size_t n = off + packet(buf + off, name);
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                             .sll_ifindex = (int)if_nametoindex("lo"), .sll_halen = 6};
    if (sendto(fd, buf, n, 0, (struct sockaddr *)&to, sizeof to) < 0)
        printf("%s=send:%s\n", name, ename(errno));
    else
        printf("%s=sent\n", name);
    close(fd);
}

static void created(const char *name, int fd) {
    if (fd < 0) printf("%s=%s\n", name, ename(errno));
    else { printf("%s=created\n", name); close(fd); }
}

static long int80(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}

/* An int 0x80 result as a descriptor, with errno set on failure. */
static int fd_of(long r) {
    if (r < 0) { errno = (int)-r; return -1; }
    return (int)r;
}

static int icmp(const char *how) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (fd < 0) { printf("socket=%s\n", ename(errno)); return 0; }
    printf("socket=ok\n");
    struct icmphdr echo = {.type = ICMP_ECHO, .un.echo.sequence = htons(1)};
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    long r;
    if (strcmp(how, "connect") == 0) {
        if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
            printf("connect=%s\n", ename(errno));
            r = send(fd, &echo, sizeof echo, 0);
        } else {
            printf("connect=ok\n");
            r = send(fd, &echo, sizeof echo, 0);
        }
    } else {
        r = sendto(fd, &echo, sizeof echo, 0, (struct sockaddr *)&to, sizeof to);
    }
    printf("send=%s\n", r < 0 ? ename(errno) : "ok");
    struct pollfd p = {.fd = fd, .events = POLLIN};
    printf("reply=%s\n", poll(&p, 1, 300) == 1 ? "yes" : "no");
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "icmp") == 0) return icmp(argv[2]);
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: h_raw PORT [ADDR] | h_raw icmp sendto|connect\n");
        return 2;
    }
    port = (unsigned short)atoi(argv[1]);
    dst.s_addr = htonl(INADDR_LOOPBACK);
    if (argc == 3 && inet_pton(AF_INET, argv[2], &dst) != 1) { fprintf(stderr, "bad address\n"); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);

    send_ip("hdrincl", socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_RAW));

    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    int one = 1;
    if (fd >= 0 && setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof one) < 0) {
        printf("icmp_hdr=setsockopt:%s\n", ename(errno));
        close(fd);
    } else {
        send_ip("icmp_hdr", fd);
    }

    send_ip("syscall", (int)syscall(SYS_socket, (long)AF_INET | (1L << 32), (long)SOCK_RAW,
                                    (long)IPPROTO_RAW));

    /* i386 calls read their arguments below 4 GiB. */
    unsigned int *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) { perror("mmap"); return 2; }
    low[0] = AF_INET; low[1] = SOCK_RAW; low[2] = IPPROTO_RAW;
    send_ip("int80", fd_of(int80(102 /* socketcall */, 1 /* SYS_SOCKET */, (long)low, 0)));
    send_ip("int80_sock", fd_of(int80(359 /* socket */, AF_INET, SOCK_RAW, IPPROTO_RAW)));

    send_lo("pkt_dgram", socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP)), 0);
    send_lo("pkt_raw", socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, 0), 1);

    created("raw6", socket(AF_INET6, SOCK_RAW, IPPROTO_UDP));
    created("inet_pkt", socket(AF_INET, SOCK_PACKET, htons(ETH_P_ALL)));
    created("xdp", socket(44 /* AF_XDP */, SOCK_RAW, 0));
    /* An ordinary socket still works. */
    created("udp", socket(AF_INET, SOCK_DGRAM, 0));
    return 0;
}
