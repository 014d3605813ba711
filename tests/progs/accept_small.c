/* accept_small PORT
 * Listens on [::]:PORT (dual-stack) and accepts one connection into a 16-byte
 * address buffer followed by a canary (the `struct sockaddr` idiom on an IPv6
 * socket), then prints what accept() reported, whether the bytes after the
 * buffer survived, and getpeername() into a full buffer:
 *   len=N family=F canary=intact|SMASHED
 *   peer=ADDR */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: accept_small PORT\n"); return 2; }
    int l = socket(AF_INET6, SOCK_STREAM, 0), off = 0, on = 1;
    setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[1])) };
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4)) { perror("bind/listen"); return 1; }
    printf("ready\n");
    fflush(stdout);
    struct { unsigned char buf[16]; unsigned char canary[16]; } o;
    memset(&o, 0xAB, sizeof o);
    socklen_t len = 16;
    int c = accept(l, (struct sockaddr *)o.buf, &len);
    if (c < 0) { perror("accept"); return 1; }
    int intact = 1;
    for (int i = 0; i < 16; i++) intact &= o.canary[i] == 0xAB;
    unsigned short family;
    memcpy(&family, o.buf, sizeof family);
    printf("len=%u family=%d canary=%s\n", len, family, intact ? "intact" : "SMASHED");
    struct sockaddr_in6 full;
    socklen_t fl = sizeof full;
    char s[INET6_ADDRSTRLEN] = "?";
    if (getpeername(c, (struct sockaddr *)&full, &fl) == 0)
        inet_ntop(AF_INET6, &full.sin6_addr, s, sizeof s);
    printf("peer=%s\n", s);
    return 0;
}
