/* attach_cmd: a program that does network work on command, for the attach
 * tests (issue 15). Prints "ready pid=P" once, then reads one command per
 * line on stdin and answers each with one line on stdout:
 *   connect PORT      a blocking TCP connect to 127.0.0.1:PORT on a fresh
 *                     socket, closed at once: "connect PORT ok" or
 *                     "connect PORT err ERRNAME"
 *   dial PORT         the same, but the first connection that works is kept
 *                     (the "established" one): "dial PORT ok|err ERRNAME"
 *   echo TEXT         send TEXT\n on the kept connection and read the reply
 *                     line: "echo ok REPLY" or "echo err ERRNAME|eof"
 *   run PROG ARGS...  fork, execv PROG, wait: "ran pid=P exit=N"
 *   bg PROG ARGS...   fork, execv PROG, no wait: "bg pid=P"
 *   status            "status" (a no-op: proves the program still reads)
 *   exit              exit 0
 * EOF on stdin: exit 0. An unknown command: "what CMD". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int kept = -1;

static int tcp(int port, int *fd) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno;
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(s);
        return e;
    }
    *fd = s;
    return 0;
}

/* Split `line` at spaces into argv (at most 30 words). */
static int words(char *line, char **argv) {
    int n = 0;
    for (char *w = strtok(line, " "); w && n < 30; w = strtok(NULL, " "))
        argv[n++] = w;
    argv[n] = NULL;
    return n;
}

static pid_t start(char **argv) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        printf("execv %s: %s\n", argv[0], strerrorname_np(errno));
        fflush(stdout);
        _exit(127);
    }
    return pid;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready pid=%d\n", getpid());
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        char *argv[32];
        char copy[4096];
        strcpy(copy, line);
        int n = words(copy, argv);
        if (n == 0)
            continue;
        if (!strcmp(argv[0], "connect") && n == 2) {
            int fd = -1, e = tcp(atoi(argv[1]), &fd);
            if (e)
                printf("connect %s err %s\n", argv[1], strerrorname_np(e));
            else {
                close(fd);
                printf("connect %s ok\n", argv[1]);
            }
        } else if (!strcmp(argv[0], "dial") && n == 2) {
            int fd = -1, e = tcp(atoi(argv[1]), &fd);
            if (e)
                printf("dial %s err %s\n", argv[1], strerrorname_np(e));
            else {
                if (kept < 0)
                    kept = fd;
                else
                    close(fd);
                printf("dial %s ok\n", argv[1]);
            }
        } else if (!strcmp(argv[0], "echo") && n == 2) {
            char out[4200], in[4200];
            int len = snprintf(out, sizeof out, "%s\n", argv[1]);
            if (kept < 0) {
                printf("echo err none\n");
                continue;
            }
            if (send(kept, out, len, MSG_NOSIGNAL) != len) {
                printf("echo err %s\n", strerrorname_np(errno));
                continue;
            }
            size_t got = 0;
            while (got < sizeof in - 1 && (got == 0 || in[got - 1] != '\n')) {
                ssize_t r = recv(kept, in + got, sizeof in - 1 - got, 0);
                if (r <= 0) {
                    got = 0;
                    break;
                }
                got += r;
            }
            if (got == 0) {
                printf("echo err eof\n");
                continue;
            }
            in[got] = 0;
            in[strcspn(in, "\r\n")] = 0;
            printf("echo ok %s\n", in);
        } else if (!strcmp(argv[0], "run") && n >= 2) {
            pid_t pid = start(argv + 1);
            int st = 0;
            if (pid < 0 || waitpid(pid, &st, 0) != pid)
                printf("ran err %s\n", strerrorname_np(errno));
            else
                printf("ran pid=%d exit=%d\n", pid, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        } else if (!strcmp(argv[0], "bg") && n >= 2) {
            pid_t pid = start(argv + 1);
            if (pid < 0)
                printf("bg err %s\n", strerrorname_np(errno));
            else
                printf("bg pid=%d\n", pid);
        } else if (!strcmp(argv[0], "status")) {
            printf("status\n");
        } else if (!strcmp(argv[0], "exit")) {
            return 0;
        } else {
            printf("what %s\n", line);
        }
    }
    return 0;
}
