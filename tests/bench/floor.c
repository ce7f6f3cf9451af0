/*
 * floor: the fan-out benchmark's physical limit. A minimal WebSocket
 * server, one thread on plain epoll, no library but libcrypto's SHA-1 for
 * Sec-WebSocket-Accept: it accepts upgrades on one port and, for each HTTP
 * request on a second port (the trigger), frames one event once and
 * write()s it to every linked socket in a loop, then answers
 * {"seq":N,"delivered":M}. Whatever discoveryd does per event on top of
 * that loop is its overhead. It is a measuring instrument, not a server:
 * the handshake checks only what it needs, client frames are read and
 * dropped, and a short write keeps its remainder for EPOLLOUT.
 *
 *   floor [-a HOST:PORT] [-H HOST:PORT]     (both 127.0.0.1:0 by default)
 *
 * Once both listen it prints "ready agents=HOST:PORT http=HOST:PORT".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD    65536 /* conns are indexed by fd */
#define HEAD_MAX  1024  /* bytes of a request head */
#define FRAME_MAX 1024  /* bytes of the framed event */
#define WS_GUID   "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* The event, shaped and sized like discoveryd's broadcast. */
#define EVENT_FMT                                                              \
	"{\"type\":\"event\",\"epoch\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\","  \
	"\"seq\":%llu,\"kind\":\"command\",\"command\":\"Reload\","            \
	"\"header\":{\"source\":\"bench\"},\"value\":{\"why\":\"bench\"}}"

enum role { R_NONE, R_HANDSHAKE, R_LIVE, R_HTTP };

struct conn {
	uint8_t role;        /* enum role */
	uint32_t live_index; /* position in live[] */
	uint32_t head_len;
	char *head;    /* the request head, until answered */
	char *pending; /* unwritten frame bytes */
	size_t pending_len;
};

static struct conn conns[MAX_FD];
static int live[MAX_FD];
static uint32_t nlive;
static int ep, agents_fd, http_fd;
static unsigned long long seq;
static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

static int listen_on(const char *spec, char *bound, size_t cap)
{
	struct addrinfo hints = { .ai_family = AF_INET,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char host[256];
	const char *colon = strrchr(spec, ':');
	int one = 1, fd;

	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, 4096) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
		freeaddrinfo(res);
		close(fd);
		return -1;
	}
	freeaddrinfo(res);
	snprintf(bound, cap, "%s:%u", inet_ntoa(sa.sin_addr),
		 ntohs(sa.sin_port));
	return fd;
}

static void conn_close(int fd)
{
	struct conn *c = &conns[fd];

	if (c->role == R_LIVE) {
		int moved = live[--nlive];

		live[c->live_index] = moved;
		conns[moved].live_index = c->live_index;
	}
	free(c->head);
	free(c->pending);
	memset(c, 0, sizeof(*c));
	close(fd);
}

static void accept_all(int lfd, enum role role)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
		int one = 1;

		if (fd < 0)
			return;
		if (fd >= MAX_FD || !(conns[fd].head = malloc(HEAD_MAX + 1)) ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		conns[fd].role = (uint8_t)role;
	}
}

/* The value of header name in the NUL-terminated head, or NULL. */
static const char *header(const char *head, const char *name, size_t *len)
{
	size_t nl = strlen(name);

	for (const char *p = strstr(head, "\r\n"); p; p = strstr(p, "\r\n")) {
		const char *v, *e;

		p += 2;
		if (strncasecmp(p, name, nl) != 0 || p[nl] != ':')
			continue;
		for (v = p + nl + 1; *v == ' '; v++)
			;
		e = strstr(v, "\r\n");
		*len = e ? (size_t)(e - v) : strlen(v);
		return v;
	}
	return NULL;
}

/* Answer the upgrade; the link is live. -1: close it. */
static int handshake(int fd)
{
	struct conn *c = &conns[fd];
	unsigned char md[EVP_MAX_MD_SIZE], accept[64];
	char keyed[256], answer[256];
	unsigned int mdlen;
	size_t klen;
	const char *key = header(c->head, "Sec-WebSocket-Key", &klen);
	int n;

	if (!key || klen > 64)
		return -1;
	n = snprintf(keyed, sizeof(keyed), "%.*s" WS_GUID, (int)klen, key);
	if (!EVP_Digest(keyed, (size_t)n, md, &mdlen, EVP_sha1(), NULL))
		return -1;
	EVP_EncodeBlock(accept, md, (int)mdlen);
	n = snprintf(answer, sizeof(answer),
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: "
		     "websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		     accept);
	if (write(fd, answer, (size_t)n) != n)
		return -1;
	free(c->head);
	c->head = NULL;
	c->role = R_LIVE;
	c->live_index = nlive;
	live[nlive++] = fd;
	return 0;
}

/* Keep what write() did not take; EPOLLOUT sends it. -1: close. */
static int keep_pending(int fd, const char *p, size_t n)
{
	struct conn *c = &conns[fd];
	char *grown = realloc(c->pending, c->pending_len + n);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.fd = fd };

	if (!grown)
		return -1;
	memcpy(grown + c->pending_len, p, n);
	c->pending = grown;
	c->pending_len += n;
	return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

static void flush_pending(int fd)
{
	struct conn *c = &conns[fd];
	ssize_t w = write(fd, c->pending, c->pending_len);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (w < 0 && errno == EAGAIN)
		return;
	if (w < 0) {
		conn_close(fd);
		return;
	}
	memmove(c->pending, c->pending + w, c->pending_len - (size_t)w);
	c->pending_len -= (size_t)w;
	if (!c->pending_len)
		epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

/* The hot loop: frame once, write() to every live socket. */
static uint32_t broadcast(void)
{
	static char frame[FRAME_MAX];
	size_t h, len;
	int n = snprintf(frame + 4, sizeof(frame) - 4, EVENT_FMT, ++seq);
	uint32_t sent = 0;

	len = (size_t)n;
	if (len < 126) {
		h = 2;
		frame[2] = (char)0x81;
		frame[3] = (char)len;
	} else {
		h = 4;
		frame[0] = (char)0x81;
		frame[1] = 126;
		frame[2] = (char)(len >> 8);
		frame[3] = (char)len;
	}
	for (uint32_t i = 0; i < nlive; i++) {
		int fd = live[i];
		const char *p = frame + 4 - h;
		ssize_t w = conns[fd].pending_len ? 0 : write(fd, p, h + len);

		if (w < 0 && errno != EAGAIN)
			continue; /* EPOLLIN will see the error */
		if (w < 0)
			w = 0;
		if ((size_t)w < h + len &&
		    keep_pending(fd, p + w, h + len - (size_t)w))
			continue;
		sent++;
	}
	return sent;
}

static int trigger(int fd)
{
	char answer[256], body[64];
	uint32_t sent = broadcast();
	int bl = snprintf(body, sizeof(body), "{\"seq\":%llu,\"delivered\":%u}",
			  seq, sent);
	int n = snprintf(answer, sizeof(answer),
			 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
			 bl, body);

	return write(fd, answer, (size_t)n) == n ? 0 : -1;
}

/* A request head (and a body within HEAD_MAX) is here: act on it. */
static int head_input(int fd)
{
	struct conn *c = &conns[fd];
	ssize_t r = read(fd, c->head + c->head_len, HEAD_MAX - c->head_len);
	char *end;

	if (r < 0 && errno == EAGAIN)
		return 0;
	if (r <= 0)
		return -1;
	c->head_len += (uint32_t)r;
	c->head[c->head_len] = '\0';
	end = strstr(c->head, "\r\n\r\n");
	if (!end)
		return c->head_len == HEAD_MAX ? -1 : 0;
	if (c->role == R_HANDSHAKE)
		return handshake(fd);
	trigger(fd);
	return -1; /* Connection: close */
}

static void conn_event(const struct epoll_event *e)
{
	int fd = e->data.fd;
	char sink[4096];

	if (conns[fd].role == R_LIVE) {
		if (e->events & EPOLLOUT)
			flush_pending(fd);
		if (conns[fd].role == R_LIVE &&
		    (e->events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
			ssize_t r = read(fd, sink, sizeof(sink));

			if (r == 0 || (r < 0 && errno != EAGAIN))
				conn_close(fd);
		}
		return;
	}
	if (head_input(fd) != 0)
		conn_close(fd);
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	const char *agents = "127.0.0.1:0", *http = "127.0.0.1:0";
	char agents_at[64], http_at[64];
	struct epoll_event ev = { .events = EPOLLIN }, evs[512];
	int c;

	while ((c = getopt(argc, argv, "a:H:")) != -1) {
		if (c == 'a')
			agents = optarg;
		else if (c == 'H')
			http = optarg;
		else {
			fprintf(stderr,
				"usage: floor [-a HOST:PORT] [-H HOST:PORT]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_term);
	raise_nofile();
	ep = epoll_create1(EPOLL_CLOEXEC);
	agents_fd = listen_on(agents, agents_at, sizeof(agents_at));
	http_fd = listen_on(http, http_at, sizeof(http_at));
	if (ep < 0 || agents_fd < 0 || http_fd < 0) {
		perror("floor: listen");
		return 1;
	}
	ev.data.fd = agents_fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, agents_fd, &ev);
	ev.data.fd = http_fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, http_fd, &ev);
	printf("ready agents=%s http=%s\n", agents_at, http_at);
	fflush(stdout);
	while (!stopping) {
		int n = epoll_wait(ep, evs, 512, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == agents_fd)
				accept_all(fd, R_HANDSHAKE);
			else if (fd == http_fd)
				accept_all(fd, R_HTTP);
			else if (conns[fd].role != R_NONE)
				conn_event(&evs[i]);
		}
	}
	return 0;
}
