#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *last = "";
    for (int i = 0; i < 100; i++) {   /* bounded: ~1 s */
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        const char *r = connect(s, (struct sockaddr *)&a, sizeof a) ? strerror(errno) : "CONNECTED";
        if (strcmp(r, last)) { printf("loopprog: iteration %d: %s\n", i, r); last = r; }
        close(s); usleep(10000);
    }
    return 0;
}
