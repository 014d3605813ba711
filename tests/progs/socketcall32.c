/* socketcall32 PORT
 * A 64-bit program that makes its network calls through the i386 ABI
 * (int 0x80, socketcall): socket(), then connect() to 127.0.0.1:PORT, then
 * reads the peer's first line with an ordinary read(). Arguments live in
 * memory below 4 GiB, as 32-bit calls need. Prints result=ok or errno=N. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long int80(long nr, long a, long b) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b) : "memory");
    return ret;
}

#define SYS_SOCKETCALL_32 102
#define SC_SOCKET 1
#define SC_CONNECT 3

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: socketcall32 PORT\n"); return 2; }
    unsigned char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) { perror("mmap"); return 2; }
    unsigned int *args = (unsigned int *)low;
    struct sockaddr_in *sa = (struct sockaddr_in *)(low + 64);
    args[0] = AF_INET; args[1] = SOCK_STREAM; args[2] = 0;
    long fd = int80(SYS_SOCKETCALL_32, SC_SOCKET, (long)args);
    if (fd < 0) { printf("socket errno=%ld\n", -fd); return 1; }
    sa->sin_family = AF_INET;
    sa->sin_port = htons(atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.1", &sa->sin_addr);
    args[0] = (unsigned)fd; args[1] = (unsigned)(unsigned long)sa; args[2] = sizeof *sa;
    long r = int80(SYS_SOCKETCALL_32, SC_CONNECT, (long)args);
    if (r < 0) { printf("errno=%ld\n", -r); return 1; }
    printf("result=ok\n");
    char buf[64];
    ssize_t n = read((int)fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    buf[strcspn(buf, "\r\n")] = 0;
    printf("data=%s\n", buf);
    printf("port_in_buffer=%d\n", ntohs(sa->sin_port));
    return 0;
}
