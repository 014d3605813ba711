/* "h_connects N PORT [stderr]": N TCP connects to 127.0.0.1:PORT, each on
 * a fresh socket; prints "done N refused R" on stdout. With "stderr", then
 * writes one line to its own stderr (dies of SIGPIPE if nobody reads it,
 * as any program would). Exit 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    int n = atoi(argv[1]), refused = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0)
            return 3;
        if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
            refused++;
        close(s);
    }
    printf("done %d refused %d\n", n, refused);
    fflush(stdout);
    if (argc > 3 && !strcmp(argv[3], "stderr")) {
        static const char msg[] = "h_connects: a line on stderr\n";
        if (write(2, msg, sizeof msg - 1) < 0)
            return 4;
    }
    return 0;
}
