/*
 * echo_epoll.c: the C baseline of the echo benchmark (bench/README.md).
 *
 * One thread, one epoll instance, every socket non-blocking and edge-triggered.
 * Each connection has a 16 KiB buffer: on an event it reads until EAGAIN and
 * writes back what it read. A write that the socket takes only in part leaves
 * the rest in the buffer; the connection then stops reading (the peer's data
 * waits in the kernel) until an EPOLLOUT edge says there is room again.
 *
 * Each connection is registered once, for EPOLLIN | EPOLLOUT | EPOLLET, so the
 * steady state makes no epoll_ctl call at all: an edge-triggered EPOLLOUT costs
 * nothing while nobody waits for it.
 *
 * Usage: echo_c [IP:PORT]   (default 127.0.0.1:7000; port 0 picks a free one)
 * Prints "listening on IP:PORT" on stdout once ready, then serves until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define BUF_SIZE (16 * 1024)
#define MAX_EVENTS 1024
#define LISTEN_BACKLOG 4096

/* One client connection. */
struct conn {
    int fd;
    size_t offset;  /* start of the bytes read but not yet written back */
    size_t pending; /* how many there are */
    char buf[BUF_SIZE];
};

/* Parses "IP:PORT" (IPv4) into addr; returns 0 on success, -1 otherwise. */
static int parse_addr(const char *text, struct sockaddr_in *addr)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || (size_t)(colon - text) >= sizeof(host)) {
        return -1;
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535) {
        return -1;
    }
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_port = htons((unsigned short)port);
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -1;
}

/* A non-blocking listening socket bound to addr, or -1 (errno says why). */
static int listen_on(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) == -1 ||
        listen(fd, LISTEN_BACKLOG) == -1) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/*
 * Moves bytes until the socket would block: first what is left to write back,
 * then read, write back, read, ... Returns 0 to wait for the next edge, -1 when
 * the connection is over (EOF or an error) and must be closed.
 */
static int drive(struct conn *c)
{
    for (;;) {
        while (c->pending > 0) {
            ssize_t n = write(c->fd, c->buf + c->offset, c->pending);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                /* Full send buffer: the rest stays here until EPOLLOUT. */
                return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
            }
            c->offset += (size_t)n;
            c->pending -= (size_t)n;
        }
        ssize_t n = read(c->fd, c->buf, BUF_SIZE);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            /* Drained: the next byte to arrive raises a new edge. */
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        if (n == 0) {
            return -1; /* EOF */
        }
        c->offset = 0;
        c->pending = (size_t)n;
    }
}

/* Accepts every pending connection (edge-triggered: until EAGAIN). */
static void accept_all(int epfd, int listenfd)
{
    for (;;) {
        int fd = accept4(listenfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE and the like: this batch waits for the next edge. */
                perror("echo_c: accept4");
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = malloc(sizeof(*c));
        if (c == NULL) {
            fprintf(stderr, "echo_c: out of memory\n");
            close(fd);
            continue;
        }
        c->fd = fd;
        c->offset = 0;
        c->pending = 0;
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = c;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
            perror("echo_c: epoll_ctl ADD");
            close(fd);
            free(c);
        }
    }
}

int main(int argc, char **argv)
{
    const char *where = argc > 1 ? argv[1] : "127.0.0.1:7000";
    struct sockaddr_in addr;
    if (argc > 2 || parse_addr(where, &addr) == -1) {
        fprintf(stderr, "usage: echo_c [IP:PORT]   (IPv4, default 127.0.0.1:7000)\n");
        return 2;
    }
    /* A write to a connection the peer has reset must fail, not kill us. */
    signal(SIGPIPE, SIG_IGN);

    int listenfd = listen_on(&addr);
    if (listenfd == -1) {
        fprintf(stderr, "echo_c: cannot listen on %s: %s\n", where, strerror(errno));
        return 1;
    }
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd == -1) {
        perror("echo_c: epoll_create1");
        return 1;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLET;
    ev.data.ptr = NULL; /* NULL marks the listener; connections carry their conn */
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listenfd, &ev) == -1) {
        perror("echo_c: epoll_ctl ADD listener");
        return 1;
    }

    socklen_t len = sizeof(addr);
    char ip[INET_ADDRSTRLEN];
    if (getsockname(listenfd, (struct sockaddr *)&addr, &len) == -1 ||
        inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof(ip)) == NULL) {
        perror("echo_c: getsockname");
        return 1;
    }
    printf("listening on %s:%u\n", ip, (unsigned)ntohs(addr.sin_port));
    fflush(stdout);

    static struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int nfds = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (nfds == -1) {
            if (errno == EINTR) {
                continue;
            }
            perror("echo_c: epoll_wait");
            return 1;
        }
        for (int i = 0; i < nfds; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                accept_all(epfd, listenfd);
            } else if (drive(c) == -1) {
                /* Closing the fd also removes it from the epoll set. */
                close(c->fd);
                free(c);
            }
        }
    }
}
