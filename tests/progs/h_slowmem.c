/* h_slowmem DIR PORT
 * Class 8 probe: memory that blocks on access. The program serves a FUSE
 * filesystem of its own on DIR (raw /dev/fuse protocol, one thread) whose
 * READ requests are never answered, maps its one file, and passes a
 * pointer into that mapping to connect(127.0.0.1:PORT). Untraced, the
 * program would block itself in the fault; traced, the tracer must not be
 * held: the call fails (EFAULT) or the program is killed, and nothing
 * else stops. Prints mounted=OK, then connect=OK|<ERRNO>. Unmounts DIR
 * (lazily) before exiting. Needs root (mount). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int dev;
static char *dir;

static void reply(uint64_t unique, int error, const void *body, size_t n) {
    char buf[512];
    struct fuse_out_header h = { .len = sizeof h + n, .error = error, .unique = unique };
    memcpy(buf, &h, sizeof h);
    if (n) memcpy(buf + sizeof h, body, n);
    write(dev, buf, sizeof h + n);
}

static void attr(struct fuse_attr *a, uint64_t ino) {
    memset(a, 0, sizeof *a);
    a->ino = ino;
    a->mode = ino == 1 ? (S_IFDIR | 0755) : (S_IFREG | 0644);
    a->nlink = 1;
    a->size = ino == 1 ? 0 : 4096;
    a->blksize = 4096;
}

static void *serve(void *arg) {
    (void)arg;
    static char buf[1 << 17];
    for (;;) {
        ssize_t n = read(dev, buf, sizeof buf);
        if (n < (ssize_t)sizeof(struct fuse_in_header)) {
            if (n < 0 && errno == EINTR) continue;
            return NULL;
        }
        struct fuse_in_header *in = (void *)buf;
        switch (in->opcode) {
        case FUSE_INIT: {
            struct fuse_init_out o = { .major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION,
                                       .max_readahead = 4096, .max_write = 4096, .max_pages = 1 };
            reply(in->unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_LOOKUP: {
            struct fuse_entry_out o = { .nodeid = 2 };
            attr(&o.attr, 2);
            if (strcmp(buf + sizeof *in, "f")) reply(in->unique, -ENOENT, NULL, 0);
            else reply(in->unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_GETATTR: {
            struct fuse_attr_out o = { 0 };
            attr(&o.attr, in->nodeid);
            reply(in->unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_OPEN: {
            struct fuse_open_out o = { .fh = 1 };
            reply(in->unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_READ:
        case FUSE_INTERRUPT:
            break; /* never answered: whoever faults on the file waits */
        case FUSE_FORGET:
        case FUSE_BATCH_FORGET:
            break;
        default:
            reply(in->unique, -ENOSYS, NULL, 0);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: h_slowmem DIR PORT\n"); return 2; }
    dir = argv[1];
    dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (dev < 0) { perror("/dev/fuse"); return 2; }
    char opts[128];
    snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0", dev);
    if (mount("h_slowmem", dir, "fuse.h_slowmem", MS_NOSUID | MS_NODEV, opts)) { perror("mount"); return 2; }
    pthread_t t;
    pthread_create(&t, NULL, serve, NULL);
    printf("mounted=OK\n");
    fflush(stdout);
    char path[4096];
    snprintf(path, sizeof path, "%s/f", dir);
    int f = open(path, O_RDONLY);
    void *m = f < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, f, 0);
    if (m == MAP_FAILED) { perror("map"); umount2(dir, MNT_DETACH); return 2; }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int r = connect(s, (struct sockaddr *)m, 16);
    printf("connect=%s\n", r == 0 ? "OK" : strerrorname_np(errno));
    fflush(stdout);
    umount2(dir, MNT_DETACH);
    return 0;
}
