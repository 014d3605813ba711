/* bind_check [-u] [-l] HOST PORT
 * Creates a TCP socket (UDP with -u) of HOST's family (IPv4 or IPv6, numeric)
 * and binds it to HOST:PORT. PORT "none" skips the bind entirely.
 * Prints, one key=value per line:
 *   bind=ok | bind_errno=NAME       (not printed when PORT is none)
 *   listen=ok | listen_errno=NAME   with -l, if bind succeeded or was skipped:
 *                                   the outcome of listen(fd, 16)
 *   local=ADDR:PORT                 getsockname() afterwards; IPv6 addresses
 *                                   are bracketed: local=[::1]:8080
 * Exits 0; usage errors exit 2. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void usage(void) { fprintf(stderr, "usage: bind_check [-u] [-l] HOST PORT|none\n"); }

int main(int argc, char **argv) {
    int udp = 0, do_listen = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-u")) udp = 1;
        else if (!strcmp(argv[i], "-l")) do_listen = 1;
        else { usage(); return 2; }
    }
    if (argc - i != 2) { usage(); return 2; }
    const char *host = argv[i], *port = argv[i + 1];
    int skip_bind = !strcmp(port, "none");

    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV }, *res;
    if (getaddrinfo(host, skip_bind ? "0" : port, &hints, &res) != 0) {
        fprintf(stderr, "bad host/port\n");
        return 2;
    }
    int fd = socket(res->ai_family, res->ai_socktype, 0);
    if (fd < 0) { perror("socket"); return 2; }

    int bind_err = 0;
    if (!skip_bind) {
        bind_err = bind(fd, res->ai_addr, res->ai_addrlen) < 0 ? errno : 0;
        if (bind_err) printf("bind_errno=%s\n", strerrorname_np(bind_err));
        else printf("bind=ok\n");
    }
    freeaddrinfo(res);

    if (do_listen && !bind_err) {
        if (listen(fd, 16) < 0) printf("listen_errno=%s\n", strerrorname_np(errno));
        else printf("listen=ok\n");
    }

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char addr[INET6_ADDRSTRLEN] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof addr);
            printf("local=[%s]:%u\n", addr, ntohs(s6->sin6_port));
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof addr);
            printf("local=%s:%u\n", addr, ntohs(s4->sin_port));
        }
    } else {
        printf("local_errno=%s\n", strerrorname_np(errno));
    }
    fflush(stdout);
    close(fd);
    return 0;
}
