/* accept_server.c - loopback TCP server for connect_client: accept + close.
 *
 * Build: gcc -O2 -o accept_server accept_server.c
 * Usage: accept_server [PORT [HOST]]
 * Listens on HOST (default 127.0.0.1) on PORT, or on a port chosen by the kernel (bind to
 * port 0, so it is always free), prints that port on stdout once listen() has
 * succeeded (so a printed port means "ready"), then accepts and closes
 * connections until killed. Runs untraced.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdlib.h>

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) {
        perror("socket");
        return 1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    /* PORT, or 0: let the kernel pick a free port */
    sa.sin_port = htons(argc > 1 ? (unsigned short)atoi(argv[1]) : 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (argc > 2 && inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", argv[2]);
        return 2;
    }
    socklen_t len = sizeof sa;
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(ls, 4096) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &len) < 0) {
        perror("bind/listen/getsockname");
        return 1;
    }
    printf("%d\n", ntohs(sa.sin_port));
    fflush(stdout);

    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
                errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                continue; /* transient: keep serving */
            perror("accept");
            return 1;
        }
        close(fd);
    }
}
