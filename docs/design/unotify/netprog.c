#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[i])) };
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        int r = connect(s, (struct sockaddr *)&a, sizeof a);
        printf("netprog: connect 127.0.0.1:%s -> %s\n", argv[i], r ? strerror(errno) : "connected");
        close(s);
    }
    return 3;
}
