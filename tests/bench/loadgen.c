/*
 * loadgen: the fan-out benchmark's measuring instrument. It opens N agent
 * links to discoveryd (WebSocket, subprotocol discovery.v1, handshake and
 * framing done here on plain epoll and nonblocking sockets, so the tool
 * costs little next to what it measures), says hello on each, and times the
 * connect storm (first connect to last welcome). Then, R times, it makes one
 * HTTP call (by default POST /api/discovery/cacheready, which broadcasts an
 * event to every agent) and times, per link, the arrival of the whole event
 * frame against the moment just before the request was written
 * (CLOCK_MONOTONIC, shared by every process). Links may be spread over P
 * forked workers (-P) and several source addresses (-b) to get past the
 * per-process file limit and the per-address port range; workers report to
 * the parent through pipes. With -p it also reads the daemon's VmRSS before
 * the links and after the last welcome. One JSON object goes to stdout;
 * errors and notes go to stderr.
 *
 * The client side is the least RFC 6455 an agent needs: a fixed
 * Sec-WebSocket-Key whose 101 answer is checked (status, Upgrade,
 * Connection, Accept, subprotocol); masked client frames; server frames with
 * 7-, 16- and 64-bit lengths, fragments, pings answered with pongs carrying
 * the same payload; a close frame or EOF ends the link. Each link keeps
 * LINK_BUF bytes of input: a longer frame is classified by its first bytes
 * ("type" comes first) and the rest discarded as it arrives. Connects are
 * paced (-c links between connect() and welcome at once) so the daemon's
 * accept queue never overflows; with -b each socket is bound to a source
 * address first (IP_BIND_ADDRESS_NO_PORT: the port is picked per
 * destination at connect time), which lifts the ~28k ports of one address.
 *
 *   loadgen -a 127.0.0.1:5917 -H 127.0.0.1:5916 -n 10000 -P 2 \
 *           -b 127.0.0.1,127.0.0.2 -p $(pidof discoveryd)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
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
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24     /* linux/in.h; not in every libc */
#endif

#define LINK_BUF      1024             /* bytes of input kept per link */
#define MAX_OUT       512              /* largest frame payload we send */
#define MAX_SRC       64               /* source addresses (-b) */
#define MAX_PROCS     64
#define MAX_ERR_LOG   5                /* error lines per worker */
#define STALL_NS      (10LL * 1000000000LL) /* storm: no welcome this long */
#define CTL_TAG       UINT64_MAX       /* epoll tag of the control pipe */

/* RFC 6455 §1.3's sample key and its accept value. */
#define WS_KEY        "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

struct opts {
	const char *agents, *http, *service, *prefix, *binds, *body;
	char method[16], path[256];
	long n, procs, rounds, inflight;
	double timeout_s, idle_s;
	long pid;
	struct sockaddr_in agents_sa, http_sa;
	struct sockaddr_in src[MAX_SRC];
	int nsrc;
};

enum lstate { L_IDLE, L_CONNECTING, L_UPGRADING, L_HELLO, L_LIVE, L_DEAD };
enum kind { K_OTHER, K_WELCOME, K_EVENT };

struct link {
	int fd;
	uint8_t state;                 /* enum lstate */
	uint8_t kind;                  /* enum kind of the message arriving */
	uint8_t skip_fin;              /* the skipped frame ends a message */
	uint32_t len;                  /* bytes in buf */
	uint64_t skip;                 /* payload still to discard */
	uint64_t seq;                  /* seq of the message arriving */
	int64_t t_event;               /* this round's event, ns; 0 = none */
	uint64_t ev_seq;
	char buf[LINK_BUF + 1];
};

/* What a worker tells the parent. */
struct storm_msg { int64_t t_first, t_last; uint32_t welcomed, failed; };
struct round_msg { uint32_t n, closed; };
struct hit { int64_t t; uint64_t seq; };

struct worker {
	const struct opts *o;
	int ep, ctl, res;
	struct link *links;
	uint32_t n, base, next;
	uint32_t inflight, max_inflight;
	uint32_t welcomed, failed, live, closed;
	int64_t t_first, t_last, last_progress;
	bool storm_sent, armed, quit;
	uint32_t got, expected;
	int64_t deadline;
	struct hit *hits;
	char upgrade[512];
	size_t upgrade_len;
	uint32_t rng;
	int errors;
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int write_full(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_full(int fd, void *p, size_t n)
{
	char *c = p;

	while (n) {
		ssize_t r = read(fd, c, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ---- sending frames ----------------------------------------------------- */

static uint32_t xorshift(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/* One masked client frame, written whole or not at all (the link is then
 * failed by the caller: a short write on a near-empty socket is a fault). */
static int ws_send(struct worker *w, struct link *l, int op,
		   const void *payload, size_t len)
{
	unsigned char f[8 + MAX_OUT];
	const unsigned char *p = payload;
	uint32_t key = xorshift(&w->rng);
	size_t h = 2;

	if (len > MAX_OUT)
		return -1;
	f[0] = (unsigned char)(0x80 | op);
	if (len < 126) {
		f[1] = (unsigned char)(0x80 | len);
	} else {
		f[1] = 0x80 | 126;
		f[2] = (unsigned char)(len >> 8);
		f[3] = (unsigned char)len;
		h = 4;
	}
	memcpy(f + h, &key, 4);
	for (size_t i = 0; i < len; i++)
		f[h + 4 + i] = p[i] ^ f[h + (i & 3)];
	return send(l->fd, f, h + 4 + len, MSG_NOSIGNAL) ==
	       (ssize_t)(h + 4 + len) ? 0 : -1;
}

/* ---- link bookkeeping --------------------------------------------------- */

static void link_fail(struct worker *w, struct link *l, const char *why)
{
	uint32_t i = (uint32_t)(l - w->links);

	if (w->errors++ < MAX_ERR_LOG)
		fprintf(stderr, "loadgen[%d]: link %u (state %d): %s\n",
			(int)getpid(), w->base + i, l->state, why);
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	switch (l->state) {
	case L_CONNECTING: case L_UPGRADING: case L_HELLO:
		w->inflight--;
		w->failed++;
		break;
	case L_LIVE:
		w->live--;
		w->closed++;
		if (w->armed && !l->t_event)
			w->expected--;
		break;
	default:
		w->failed++;
		break;
	}
	l->state = L_DEAD;
}

static void link_fail_errno(struct worker *w, struct link *l, const char *what)
{
	char why[160];

	snprintf(why, sizeof(why), "%s: %s", what, strerror(errno));
	link_fail(w, l, why);
}

static int link_socket(struct worker *w, uint32_t i)
{
	const struct opts *o = w->o;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->nsrc) {
		const struct sockaddr_in *src = &o->src[(w->base + i) % (uint32_t)o->nsrc];

		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (const struct sockaddr *)src, sizeof(*src)) != 0) {
			int e = errno;

			close(fd);
			errno = e;
			return -1;
		}
	}
	return fd;
}

static void link_connect(struct worker *w, uint32_t i)
{
	struct link *l = &w->links[i];
	struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = i };

	if (!w->t_first)
		w->t_first = w->last_progress = mono_ns();
	l->state = L_CONNECTING;
	w->inflight++;
	l->fd = link_socket(w, i);
	if (l->fd < 0) {
		link_fail_errno(w, l, "socket/bind");
		return;
	}
	if (connect(l->fd, (const struct sockaddr *)&w->o->agents_sa,
		    sizeof(w->o->agents_sa)) != 0 && errno != EINPROGRESS) {
		link_fail_errno(w, l, "connect");
		return;
	}
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, l->fd, &ev) != 0)
		link_fail_errno(w, l, "epoll_ctl");
}

static void link_connected(struct worker *w, struct link *l)
{
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u64 = (uint64_t)(l - w->links) };
	int err = 0;
	socklen_t el = sizeof(err);

	if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
		errno = err ? err : errno;
		link_fail_errno(w, l, "connect");
		return;
	}
	if (send(l->fd, w->upgrade, w->upgrade_len, MSG_NOSIGNAL) !=
	    (ssize_t)w->upgrade_len) {
		link_fail_errno(w, l, "send upgrade");
		return;
	}
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, l->fd, &ev) != 0) {
		link_fail_errno(w, l, "epoll_ctl");
		return;
	}
	l->state = L_UPGRADING;
}

/* ---- the upgrade response ----------------------------------------------- */

/* Does header `name` of the NUL-terminated head equal want (case per flag)? */
static bool header_is(const char *head, const char *name, const char *want,
		      bool nocase)
{
	size_t nl = strlen(name);

	for (const char *p = strstr(head, "\r\n"); p; p = strstr(p, "\r\n")) {
		const char *v, *e;
		size_t vl;

		p += 2;
		if (strncasecmp(p, name, nl) != 0 || p[nl] != ':')
			continue;
		for (v = p + nl + 1; *v == ' ' || *v == '\t'; v++)
			;
		e = strstr(v, "\r\n");
		vl = e ? (size_t)(e - v) : strlen(v);
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		return vl == strlen(want) &&
		       (nocase ? strncasecmp(v, want, vl) : strncmp(v, want, vl)) == 0;
	}
	return false;
}

static const char *upgrade_check(const char *head)
{
	if (strncmp(head, "HTTP/1.1 101 ", 13) != 0)
		return "upgrade refused (status is not 101)";
	if (!header_is(head, "Upgrade", "websocket", true))
		return "101 without Upgrade: websocket";
	if (!header_is(head, "Connection", "Upgrade", true))
		return "101 without Connection: Upgrade";
	if (!header_is(head, "Sec-WebSocket-Accept", WS_ACCEPT, false))
		return "wrong Sec-WebSocket-Accept";
	if (!header_is(head, "Sec-WebSocket-Protocol", "discovery.v1", false))
		return "subprotocol discovery.v1 not selected";
	return NULL;
}

static int send_hello(struct worker *w, struct link *l)
{
	char msg[MAX_OUT];
	int n = snprintf(msg, sizeof(msg),
			 "{\"type\":\"hello\",\"service\":\"%s\",\"instance\":"
			 "\"%s-%u\",\"depends_on\":[\"cache\"]}",
			 w->o->service, w->o->prefix,
			 w->base + (uint32_t)(l - w->links));

	if (n < 0 || (size_t)n >= sizeof(msg))
		return -1;
	return ws_send(w, l, 0x1, msg, (size_t)n);
}

/* 1: upgraded and hello sent; 0: head incomplete; -1: link failed. */
static int upgrade_done(struct worker *w, struct link *l)
{
	char *end = memmem(l->buf, l->len, "\r\n\r\n", 4);
	const char *bad;
	size_t used;

	if (!end) {
		if (l->len == LINK_BUF) {
			link_fail(w, l, "upgrade response head too large");
			return -1;
		}
		return 0;
	}
	used = (size_t)(end - l->buf) + 4;
	end[2] = '\0';                 /* keep the last header's CRLF */
	bad = upgrade_check(l->buf);
	if (bad) {
		link_fail(w, l, bad);
		return -1;
	}
	memmove(l->buf, l->buf + used, l->len - used);
	l->len -= (uint32_t)used;
	l->state = L_HELLO;
	if (send_hello(w, l) != 0) {
		link_fail_errno(w, l, "send hello");
		return -1;
	}
	return 1;
}

/* ---- messages ----------------------------------------------------------- */

static uint64_t find_seq(const char *p, size_t n)
{
	const char *s = memmem(p, n, "\"seq\":", 6);
	uint64_t v = 0;

	if (!s)
		return 0;
	for (s += 6; s < p + n && *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (uint64_t)(*s - '0');
	return v;
}

/* The first (or only) part of a message: what kind is it? */
static void message_start(struct link *l, int op, const char *p, size_t n)
{
	l->kind = K_OTHER;
	l->seq = 0;
	if (op != 0x1)
		return;
	if (memmem(p, n, "\"type\":\"event\"", 14)) {
		l->kind = K_EVENT;
		l->seq = find_seq(p, n);
	} else if (memmem(p, n, "\"type\":\"welcome\"", 16)) {
		l->kind = K_WELCOME;
	}
}

/* The message is complete: a welcome, or an event to timestamp. */
static void message_end(struct worker *w, struct link *l)
{
	if (l->kind == K_WELCOME && l->state == L_HELLO) {
		l->state = L_LIVE;
		w->inflight--;
		w->welcomed++;
		w->live++;
		w->t_last = w->last_progress = mono_ns();
	} else if (l->kind == K_EVENT && l->state == L_LIVE && w->armed &&
		   !l->t_event) {
		l->t_event = mono_ns();
		l->ev_seq = l->seq;
		w->got++;
	}
	l->kind = K_OTHER;
}

static void server_close(struct worker *w, struct link *l, const char *p,
			 size_t n)
{
	char why[200];
	int code = n >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 1005;

	snprintf(why, sizeof(why), "closed by server: %d %.*s", code,
		 n > 2 ? (int)(n - 2) : 0, n > 2 ? p + 2 : "");
	link_fail(w, l, why);
}

/* A whole frame. Returns -1 when the link was failed. */
static int frame_done(struct worker *w, struct link *l, unsigned char b0,
		      const char *p, size_t n)
{
	int op = b0 & 0x0f;

	switch (op) {
	case 0x9:
		if (ws_send(w, l, 0xA, p, n) != 0) {
			link_fail_errno(w, l, "send pong");
			return -1;
		}
		return 0;
	case 0xA:
		return 0;
	case 0x8:
		server_close(w, l, p, n);
		return -1;
	case 0x0: case 0x1: case 0x2:
		if (op != 0)
			message_start(l, op, p, n);
		if (b0 & 0x80)
			message_end(w, l);
		return 0;
	default:
		link_fail(w, l, "unknown opcode");
		return -1;
	}
}

/*
 * The frame at p (n bytes available). Returns bytes used, 0 if it is not
 * all here yet, -1 if the link was failed. A frame that can never fit the
 * link's buffer is classified by its first bytes and the rest discarded.
 */
static ssize_t frame_one(struct worker *w, struct link *l,
			 const unsigned char *p, size_t n)
{
	uint64_t plen;
	size_t hl = 2;

	if (n < 2)
		return 0;
	if (p[1] & 0x80) {
		link_fail(w, l, "masked frame from server");
		return -1;
	}
	plen = p[1] & 0x7f;
	if (plen == 126) {
		if (n < 4)
			return 0;
		plen = (uint64_t)p[2] << 8 | p[3];
		hl = 4;
	} else if (plen == 127) {
		if (n < 10)
			return 0;
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | p[2 + i];
		hl = 10;
	}
	if (plen <= n - hl)
		return frame_done(w, l, p[0], (const char *)p + hl,
				  (size_t)plen) ? -1 : (ssize_t)(hl + plen);
	if (hl + plen <= LINK_BUF)
		return 0;
	if ((p[0] & 0x0f) >= 0x8) {
		link_fail(w, l, "oversized control frame");
		return -1;
	}
	if ((p[0] & 0x0f) != 0)
		message_start(l, p[0] & 0x0f, (const char *)p + hl, n - hl);
	l->skip = plen - (n - hl);
	l->skip_fin = (p[0] & 0x80) != 0;
	return (ssize_t)n;
}

/* Use the complete frames at the front of the buffer. -1: link failed. */
static int link_frames(struct worker *w, struct link *l)
{
	size_t off = 0;

	while (off < l->len) {
		ssize_t used = frame_one(w, l, (unsigned char *)l->buf + off,
					 l->len - off);

		if (used < 0)
			return -1;
		if (used == 0)
			break;
		off += (size_t)used;
	}
	memmove(l->buf, l->buf + off, l->len - off);
	l->len -= (uint32_t)off;
	return 0;
}

/* Discard what is left of an oversized frame. */
static void skip_bytes(struct worker *w, struct link *l)
{
	size_t d = l->skip < l->len ? (size_t)l->skip : l->len;

	memmove(l->buf, l->buf + d, l->len - d);
	l->len -= (uint32_t)d;
	l->skip -= d;
	if (!l->skip && l->skip_fin)
		message_end(w, l);
}

static void link_input(struct worker *w, struct link *l)
{
	ssize_t r = recv(l->fd, l->buf + l->len, LINK_BUF - l->len, 0);

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r < 0) {
		link_fail_errno(w, l, "recv");
		return;
	}
	if (r == 0) {
		link_fail(w, l, "connection closed by server without close frame");
		return;
	}
	l->len += (uint32_t)r;
	if (l->skip)
		skip_bytes(w, l);
	if (l->state == L_UPGRADING && upgrade_done(w, l) <= 0)
		return;
	link_frames(w, l);
}

/* ---- the worker --------------------------------------------------------- */

static void worker_arm(struct worker *w)
{
	char ack = 'a';

	w->armed = true;
	w->got = 0;
	w->expected = w->live;
	w->deadline = mono_ns() + (int64_t)(w->o->timeout_s * 1e9);
	for (uint32_t i = 0; i < w->n; i++)
		w->links[i].t_event = 0;
	if (write_full(w->res, &ack, 1) != 0)
		w->quit = true;
}

static void worker_control(struct worker *w)
{
	char cmd[16];
	ssize_t r = read(w->ctl, cmd, sizeof(cmd));

	if (r <= 0) {
		w->quit = true;       /* the parent is gone */
		return;
	}
	for (ssize_t i = 0; i < r; i++) {
		if (cmd[i] == 'A')
			worker_arm(w);
		else if (cmd[i] == 'Q')
			w->quit = true;
	}
}

/* Give up on links stuck in the handshake: the storm must end. */
static void storm_stall(struct worker *w)
{
	for (uint32_t i = 0; i < w->next; i++) {
		struct link *l = &w->links[i];

		if (l->state == L_CONNECTING || l->state == L_UPGRADING ||
		    l->state == L_HELLO)
			link_fail(w, l, "no welcome in time (storm stalled)");
	}
	w->last_progress = mono_ns();
}

/* Storm and round bookkeeping after a batch of events. */
static void worker_progress(struct worker *w)
{
	while (w->next < w->n && w->inflight < w->max_inflight)
		link_connect(w, w->next++);
	if (!w->storm_sent && w->welcomed + w->failed == w->n) {
		struct storm_msg m = { w->t_first, w->t_last, w->welcomed,
				       w->failed };

		w->storm_sent = true;
		if (write_full(w->res, &m, sizeof(m)) != 0)
			w->quit = true;
	}
	if (w->armed && (w->got >= w->expected || mono_ns() >= w->deadline)) {
		struct round_msg m = { w->n, w->closed };

		w->armed = false;
		for (uint32_t i = 0; i < w->n; i++) {
			w->hits[i].t = w->links[i].t_event;
			w->hits[i].seq = w->links[i].ev_seq;
		}
		if (write_full(w->res, &m, sizeof(m)) != 0 ||
		    write_full(w->res, w->hits, w->n * sizeof(*w->hits)) != 0)
			w->quit = true;
	}
}

static int worker_wait_ms(const struct worker *w)
{
	int64_t now = mono_ns(), until = INT64_MAX, ms;

	if (w->armed)
		until = w->deadline;
	if (!w->storm_sent && w->last_progress + STALL_NS < until)
		until = w->last_progress + STALL_NS;
	if (until == INT64_MAX)
		return -1;
	ms = (until - now) / 1000000 + 1;
	return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

static void worker_event(struct worker *w, const struct epoll_event *e)
{
	struct link *l;

	if (e->data.u64 == CTL_TAG) {
		worker_control(w);
		return;
	}
	l = &w->links[e->data.u64];
	if (l->state == L_DEAD)
		return;
	if (l->state == L_CONNECTING)
		link_connected(w, l);
	else
		link_input(w, l);
}

static void worker_loop(struct worker *w)
{
	struct epoll_event evs[512];

	while (!w->quit) {
		int n = epoll_wait(w->ep, evs, 512, worker_wait_ms(w));

		if (n < 0 && errno != EINTR) {
			perror("loadgen: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++)
			worker_event(w, &evs[i]);
		if (!w->storm_sent && mono_ns() - w->last_progress > STALL_NS)
			storm_stall(w);
		worker_progress(w);
	}
}

static int worker_run(const struct opts *o, uint32_t base, uint32_t n,
		      int ctl, int res)
{
	struct worker w = { .o = o, .ctl = ctl, .res = res, .base = base,
			    .n = n, .rng = 0x9e3779b9u ^ (uint32_t)getpid() };
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = CTL_TAG };

	w.max_inflight = (uint32_t)(o->inflight / o->procs);
	if (w.max_inflight < 1)
		w.max_inflight = 1;
	w.links = calloc(n ? n : 1, sizeof(*w.links));
	w.hits = calloc(n ? n : 1, sizeof(*w.hits));
	w.ep = epoll_create1(EPOLL_CLOEXEC);
	if (!w.links || !w.hits || w.ep < 0 ||
	    epoll_ctl(w.ep, EPOLL_CTL_ADD, ctl, &ev) != 0) {
		perror("loadgen: worker setup");
		return 1;
	}
	w.upgrade_len = (size_t)snprintf(w.upgrade, sizeof(w.upgrade),
		"GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
		"Sec-WebSocket-Version: 13\r\n"
		"Sec-WebSocket-Protocol: discovery.v1\r\n\r\n", o->agents);
	for (uint32_t i = 0; i < n; i++)
		w.links[i].fd = -1;
	worker_progress(&w);
	worker_loop(&w);
	return 0;
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *out)
{
	fprintf(out,
"usage: loadgen -a HOST:PORT -H HOST:PORT [options]\n"
"  -a HOST:PORT  discoveryd's agent listener\n"
"  -H HOST:PORT  discoveryd's HTTP API\n"
"  -n N          links (1000)\n"
"  -P P          worker processes, N/P links each (1)\n"
"  -b A,B,...    IPv4 source addresses, round-robin (default: the kernel's)\n"
"  -c C          links between connect and welcome at once, all workers\n"
"                together (500)\n"
"  -s SVC        service in each hello (web)\n"
"  -i PREFIX     instance names PREFIX-0, PREFIX-1, ... (lg)\n"
"  -r R          rounds (10)\n"
"  -t 'M PATH'   the trigger call (\"POST /api/discovery/cacheready\")\n"
"  -d BODY       JSON body of the trigger call (none)\n"
"  -T SECONDS    how long a round waits for every link (10)\n"
"  -w SECONDS    idle between the storm and the first round (0); links\n"
"                answer the daemon's pings meanwhile\n"
"  -p PID        discoveryd's pid, for VmRSS\n"
"Prints one JSON object. Exit status: 0, or 3 when links failed to link\n"
"or missed an event (the JSON is still printed), 1 on errors, 2 on usage.\n");
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	char host[256];
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return -1;
	memcpy(sa, res->ai_addr, sizeof(*sa));
	freeaddrinfo(res);
	return 0;
}

static int parse_binds(struct opts *o)
{
	char list[4096], *save = NULL;

	if (!o->binds)
		return 0;
	snprintf(list, sizeof(list), "%s", o->binds);
	for (char *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		struct sockaddr_in *sa = &o->src[o->nsrc];

		if (o->nsrc == MAX_SRC)
			return -1;
		memset(sa, 0, sizeof(*sa));
		sa->sin_family = AF_INET;
		if (inet_pton(AF_INET, t, &sa->sin_addr) != 1)
			return -1;
		o->nsrc++;
	}
	return o->nsrc ? 0 : -1;
}

static long num(const char *s, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v >= lo && v <= hi ? v : LONG_MIN;
}

static int parse_opt(struct opts *o, int c, const char *arg)
{
	switch (c) {
	case 'a': o->agents = arg; break;
	case 'H': o->http = arg; break;
	case 'n': o->n = num(arg, 1, 10000000); break;
	case 'P': o->procs = num(arg, 1, MAX_PROCS); break;
	case 'b': o->binds = arg; break;
	case 'c': o->inflight = num(arg, 1, 1000000); break;
	case 's': o->service = arg; break;
	case 'i': o->prefix = arg; break;
	case 'r': o->rounds = num(arg, 0, 100000); break;
	case 't':
		if (sscanf(arg, "%15s %255s", o->method, o->path) != 2)
			return -1;
		break;
	case 'd': o->body = arg; break;
	case 'T': o->timeout_s = atof(arg); break;
	case 'w': o->idle_s = atof(arg); break;
	case 'p': o->pid = num(arg, 1, INT_MAX); break;
	default: return -1;
	}
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	int c;

	*o = (struct opts){ .service = "web", .prefix = "lg", .n = 1000,
			    .procs = 1, .rounds = 10, .inflight = 500,
			    .timeout_s = 10 };
	snprintf(o->method, sizeof(o->method), "POST");
	snprintf(o->path, sizeof(o->path), "/api/discovery/cacheready");
	while ((c = getopt(argc, argv, "a:H:n:P:b:c:s:i:r:t:d:T:w:p:h")) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (parse_opt(o, c, optarg) != 0)
			return -1;
	}
	if (optind != argc || !o->agents || !o->http || o->n == LONG_MIN ||
	    o->procs == LONG_MIN || o->inflight == LONG_MIN ||
	    o->rounds == LONG_MIN || o->pid == LONG_MIN || o->procs > o->n ||
	    !(o->timeout_s > 0) || !(o->idle_s >= 0))
		return -1;
	if (parse_addr(o->agents, &o->agents_sa) != 0 ||
	    parse_addr(o->http, &o->http_sa) != 0 || parse_binds(o) != 0) {
		fprintf(stderr, "loadgen: bad address\n");
		return -1;
	}
	return 0;
}

/* ---- the parent: workers ------------------------------------------------ */

struct child { pid_t pid; int ctl, res; uint32_t base, n; };

/* Room for each worker's links: raise the soft file limit to the hard one. */
static int raise_nofile(const struct opts *o)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)((o->n + o->procs - 1) / o->procs) + 32;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < need) {
		fprintf(stderr, "loadgen: %ld links per process need %lu files, "
			"the limit is %lu: use more -P\n",
			(o->n + o->procs - 1) / o->procs, (unsigned long)need,
			(unsigned long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

static int spawn(const struct opts *o, struct child *ch, int k)
{
	int ctl[2], res[2];

	if (pipe2(ctl, O_CLOEXEC) != 0 || pipe2(res, O_CLOEXEC) != 0)
		return -1;
	ch[k].pid = fork();
	if (ch[k].pid < 0)
		return -1;
	if (ch[k].pid == 0) {
		close(ctl[1]);
		close(res[0]);
		for (int j = 0; j < k; j++) {
			close(ch[j].ctl);
			close(ch[j].res);
		}
		_exit(worker_run(o, ch[k].base, ch[k].n, ctl[0], res[1]));
	}
	close(ctl[0]);
	close(res[1]);
	ch[k].ctl = ctl[1];
	ch[k].res = res[0];
	return 0;
}

static int spawn_all(const struct opts *o, struct child *ch)
{
	uint32_t base = 0;

	fflush(NULL);
	for (int k = 0; k < o->procs; k++) {
		ch[k].base = base;
		ch[k].n = (uint32_t)(o->n / o->procs + (k < o->n % o->procs));
		base += ch[k].n;
		if (spawn(o, ch, k) != 0) {
			perror("loadgen: fork");
			return -1;
		}
	}
	return 0;
}

static void stop_all(const struct opts *o, struct child *ch)
{
	for (int k = 0; k < o->procs; k++) {
		if (ch[k].pid <= 0)
			continue;
		if (write_full(ch[k].ctl, "Q", 1) != 0)
			kill(ch[k].pid, SIGTERM);
		close(ch[k].ctl);
	}
	for (int k = 0; k < o->procs; k++)
		if (ch[k].pid > 0)
			waitpid(ch[k].pid, NULL, 0);
}

/* ---- the parent: measures ----------------------------------------------- */

static long rss_kb(long pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[n]. */
static double pct(const double *v, size_t n, double p)
{
	size_t k;

	if (!n)
		return -1;
	k = (size_t)(p * (double)n + 0.999999999);
	return v[k ? k - 1 : 0];
}

/* Median of n values (the rounds'); -1 when there are none. */
static double median(const double *in, size_t n)
{
	double *v = malloc((n ? n : 1) * sizeof(*v)), m;

	if (!v || !n) {
		free(v);
		return -1;
	}
	memcpy(v, in, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_double);
	m = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	free(v);
	return m;
}

/* ---- the parent: the trigger call --------------------------------------- */

struct trigger { int64_t t0; int status; uint64_t seq; double http_ms; };

static int http_connect(const struct opts *o)
{
	struct timeval tv = { .tv_sec = 30 };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)&o->http_sa,
		    sizeof(o->http_sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read the whole answer (the request said Connection: close). */
static int http_answer(int fd, struct trigger *t)
{
	char buf[8192];
	size_t len = 0;
	ssize_t r;
	const char *body;

	while (len < sizeof(buf) - 1 &&
	       (r = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		len += (size_t)r;
	}
	t->http_ms = (double)(mono_ns() - t->t0) / 1e6;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", &t->status) != 1)
		return -1;
	body = strstr(buf, "\r\n\r\n");
	t->seq = body ? find_seq(body, strlen(body)) : 0;
	return 0;
}

/* The trigger: connect, take t0, write the request, read the answer. */
static int http_trigger(const struct opts *o, struct trigger *t)
{
	size_t blen = o->body ? strlen(o->body) : 0, cap = blen + 1024;
	char *req = malloc(cap);
	int n, fd, rc = -1;

	memset(t, 0, sizeof(*t));
	if (!req)
		return -1;
	n = snprintf(req, cap,
		     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
		     "%sContent-Length: %zu\r\n\r\n%s", o->method, o->path,
		     o->http, blen ? "Content-Type: application/json\r\n" : "",
		     blen, blen ? o->body : "");
	fd = http_connect(o);
	if (fd >= 0 && n > 0 && (size_t)n < cap) {
		t->t0 = mono_ns();
		rc = write_full(fd, req, (size_t)n) == 0 ? http_answer(fd, t) : -1;
	}
	if (fd >= 0)
		close(fd);
	free(req);
	return rc;
}

/* ---- the parent: rounds ------------------------------------------------- */

struct round {
	double p50, p99, last, http_ms;
	long missed, foreign;
	int status;
};

struct run {
	int64_t t_first, t_last;
	long welcomed, failed, closed;
	long rss_before, rss_after;
	struct round *rounds;
};

/* Each worker's hits into latencies (ms) of links that got this round's
 * event; links that got none are missed, other seqs are foreign. */
static int collect_round(const struct opts *o, struct child *ch,
			 const struct trigger *t, double *lat, size_t *nlat,
			 struct round *rd, struct run *run)
{
	struct round_msg m;
	struct hit *h;

	*nlat = 0;
	run->closed = 0;
	for (int k = 0; k < o->procs; k++) {
		if (read_full(ch[k].res, &m, sizeof(m)) != 0)
			return -1;
		h = malloc((m.n ? m.n : 1) * sizeof(*h));
		if (!h || read_full(ch[k].res, h, m.n * sizeof(*h)) != 0) {
			free(h);
			return -1;
		}
		run->closed += m.closed;
		for (uint32_t i = 0; i < m.n; i++) {
			if (!h[i].t)
				rd->missed++;
			else if (t->seq && h[i].seq != t->seq)
				rd->foreign++;
			else
				lat[(*nlat)++] = (double)(h[i].t - t->t0) / 1e6;
		}
		free(h);
	}
	return 0;
}

static int one_round(const struct opts *o, struct child *ch, double *lat,
		     struct round *rd, struct run *run)
{
	struct trigger t;
	size_t n;
	char ack;

	for (int k = 0; k < o->procs; k++)
		if (write_full(ch[k].ctl, "A", 1) != 0)
			return -1;
	for (int k = 0; k < o->procs; k++)
		if (read_full(ch[k].res, &ack, 1) != 0 || ack != 'a')
			return -1;
	if (http_trigger(o, &t) != 0) {
		fprintf(stderr, "loadgen: trigger call failed: %s\n", strerror(errno));
		t.t0 = mono_ns();   /* still collect: the round times out */
	}
	if (t.status && (t.status < 200 || t.status > 299))
		fprintf(stderr, "loadgen: trigger answered %d\n", t.status);
	rd->status = t.status;
	rd->http_ms = t.http_ms;
	if (collect_round(o, ch, &t, lat, &n, rd, run) != 0)
		return -1;
	/* Links that never linked are failed, not missed; links the daemon
	 * dropped after their welcome are missed. */
	rd->missed -= run->failed;
	qsort(lat, n, sizeof(*lat), cmp_double);
	rd->p50 = pct(lat, n, 0.50);
	rd->p99 = pct(lat, n, 0.99);
	rd->last = n ? lat[n - 1] : -1;
	return 0;
}

static int run_rounds(const struct opts *o, struct child *ch, struct run *run)
{
	double *lat = malloc((size_t)o->n * sizeof(*lat));

	run->rounds = calloc((size_t)(o->rounds ? o->rounds : 1),
			     sizeof(*run->rounds));
	if (!lat || !run->rounds) {
		free(lat);
		return -1;
	}
	for (long r = 0; r < o->rounds && run->welcomed; r++)
		if (one_round(o, ch, lat, &run->rounds[r], run) != 0) {
			free(lat);
			return -1;
		}
	free(lat);
	return 0;
}

/* Wait for every worker's storm report. */
static int collect_storm(const struct opts *o, struct child *ch,
			 struct run *run)
{
	for (int k = 0; k < o->procs; k++) {
		struct storm_msg m;

		if (read_full(ch[k].res, &m, sizeof(m)) != 0)
			return -1;
		if (m.t_first && (!run->t_first || m.t_first < run->t_first))
			run->t_first = m.t_first;
		if (m.t_last > run->t_last)
			run->t_last = m.t_last;
		run->welcomed += m.welcomed;
		run->failed += m.failed;
	}
	return 0;
}

/* ---- the parent: the report --------------------------------------------- */

static void print_num(const char *key, double v, const char *sep)
{
	if (v < 0)
		printf("\"%s\":null%s", key, sep);
	else
		printf("\"%s\":%.3f%s", key, v, sep);
}

enum field { F_P50, F_P99, F_LAST };

/* Median over the rounds of one of their figures (rounds without any). */
static double round_median(const struct run *run, long n, enum field f)
{
	double *v = malloc((size_t)(n ? n : 1) * sizeof(*v)), m;
	long k = 0;

	if (!v)
		return -1;
	for (long r = 0; r < n; r++) {
		const struct round *rd = &run->rounds[r];
		double x = f == F_P50 ? rd->p50 : f == F_P99 ? rd->p99 : rd->last;

		if (x >= 0)
			v[k++] = x;
	}
	m = median(v, (size_t)k);
	free(v);
	return m;
}

static void print_rounds(const struct run *run, long n)
{
	printf("\"rounds_detail\":[");
	for (long r = 0; r < n; r++) {
		const struct round *rd = &run->rounds[r];

		printf("%s{", r ? "," : "");
		print_num("p50_ms", rd->p50, ",");
		print_num("p99_ms", rd->p99, ",");
		print_num("last_ms", rd->last, ",");
		print_num("http_ms", rd->http_ms, ",");
		printf("\"status\":%d,\"missed\":%ld", rd->status, rd->missed);
		if (rd->foreign)
			printf(",\"foreign\":%ld", rd->foreign);
		printf("}");
	}
	printf("],");
}

/* Links that went without their event, over all rounds. */
static long run_missed(const struct opts *o, const struct run *run)
{
	long n = run->welcomed ? o->rounds : 0, missed = 0;

	for (long r = 0; r < n; r++)
		missed += run->rounds[r].missed + run->rounds[r].foreign;
	return missed;
}

static void print_report(const struct opts *o, const struct run *run)
{
	long n = run->welcomed ? o->rounds : 0, missed = run_missed(o, run);
	double storm = run->t_last > run->t_first ?
		       (double)(run->t_last - run->t_first) / 1e9 : -1;

	printf("{\"links\":%ld,\"procs\":%ld,\"welcomed\":%ld,\"failed\":%ld,"
	       "\"rounds\":%ld,", o->n, o->procs, run->welcomed, run->failed, n);
	print_num("connect_storm_s", storm, ",");
	print_num("p50_ms", round_median(run, n, F_P50), ",");
	print_num("p99_ms", round_median(run, n, F_P99), ",");
	print_num("last_ms", round_median(run, n, F_LAST), ",");
	print_rounds(run, n);
	printf("\"missed\":%ld,\"closed\":%ld", missed, run->closed);
	if (o->pid) {
		long grew = run->rss_after - run->rss_before;

		printf(",\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
		       "\"bytes_per_link\":%ld", run->rss_before, run->rss_after,
		       run->welcomed ? grew * 1024 / run->welcomed : 0);
	}
	printf("}\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct child ch[MAX_PROCS];
	struct run run = { 0 };
	int rc = 0;

	if (parse_opts(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (raise_nofile(&o) != 0)
		return 1;
	memset(ch, 0, sizeof(ch));
	if (o.pid)
		run.rss_before = rss_kb(o.pid);
	if (spawn_all(&o, ch) != 0 || collect_storm(&o, ch, &run) != 0) {
		fprintf(stderr, "loadgen: a worker failed during the storm\n");
		stop_all(&o, ch);
		return 1;
	}
	if (o.pid)
		run.rss_after = rss_kb(o.pid);
	if (o.idle_s > 0) {
		struct timespec ts = { (time_t)o.idle_s,
				       (long)((o.idle_s - (double)(time_t)o.idle_s) * 1e9) };

		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	if (run_rounds(&o, ch, &run) != 0) {
		fprintf(stderr, "loadgen: a worker failed during the rounds\n");
		rc = 1;
	}
	stop_all(&o, ch);
	if (rc == 0) {
		print_report(&o, &run);
		if (run.failed || run_missed(&o, &run))
			rc = 3;
	}
	free(run.rounds);
	return rc;
}
