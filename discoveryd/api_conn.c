/*
 * api_conn: every HTTP connection from accept to close, for admission and
 * deadlines, so that no one can starve the API (docs/design.md, "HTTP
 * admission"). libmicrohttpd's own limits are an idle timeout that every
 * byte resets, and caps that, once full, leave new clients in the backlog;
 * a few hundred slow clients from a handful of addresses held /healthz off
 * for as long as they liked.
 *
 * Each connection is in one state, and in that state's list, oldest first:
 *
 *   waiting   for a whole request head (from accept, or from the end of the
 *             previous request): limits.header_timeout
 *   body      head read, body coming: limits.body_timeout
 *   busy      the request is complete: the route runs, the answer goes out
 *   stream    a live event stream (SSE), counted against its own caps
 *   blocked   a blocking query, suspended until its index passes or its
 *             wait ends (api_block.c): under the same caps as streams
 *   gone      shut down by us (refused, evicted, past its deadline), until
 *             libmicrohttpd sees the end of the socket and closes it
 *
 * Admission, in the accept policy (cheap, no allocation) and again, exactly,
 * when libmicrohttpd starts the connection: an address at
 * limits.max_http_per_ip is refused; at limits.max_http the oldest
 * connection that has not sent a complete request (waiting or body) is
 * evicted to make room, else one whose answer has not been taken within
 * header_timeout, and only when there is neither is the new one refused.
 * An attacker can hold connections without sending requests (or without
 * reading answers), from as many addresses as he likes, but each newcomer
 * takes the place of the oldest of them; what he cannot hold that way
 * (requests being answered, streams) is capped per address and, for
 * streams, in total below max_http. Refusals and evictions are counted
 * (/metrics) and logged at most once per ADMISSION_LOG_MS, never once each.
 *
 * To refuse, evict or time out is to shutdown(2) the socket: libmicrohttpd,
 * on whichever of its threads owns the connection, then reads the end and
 * closes it. Its CLOSED notification, which comes before close(2), takes
 * the entry away under the same mutex, so a descriptor is never shut down
 * after it could have been reused. A guard thread shuts down the
 * connections past their deadline; as every connection in one list has the
 * same timeout, the list's head is the next to expire.
 *
 * Everything here is under one mutex: libmicrohttpd's threads, the guard
 * and /metrics touch it, for a few pointer moves each.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api_int.h"
#include "clock.h"
#include "log.h"

#define ADMISSION_LOG_MS 10000 /* at most one line about refusals */
#define GUARD_TICK_MS    1000  /* the guard's longest sleep */
#define MHD_LOG_BURST    20    /* libmicrohttpd's lines per 10 s */

enum conn_state {
	ST_WAITING,
	ST_BODY,
	ST_BUSY,
	ST_STREAM,
	ST_BLOCKED,
	ST_GONE,
	N_STATES
};

static const char *const state_names[N_STATES] = {
	"waiting", "body", "busy", "stream", "blocked", "closing",
};

enum refusal { RF_MAX_HTTP, RF_PER_IP, RF_STREAMS, RF_STREAMS_PER_IP, N_RF };

static const char *const refusal_names[N_RF] = {
	"max_http",
	"max_http_per_ip",
	"max_streams",
	"max_streams_per_ip",
};

/* One source address (an IPv4-mapped IPv6 address counts as IPv4). */
struct peer {
	struct peer *next; /* in its bucket */
	unsigned char addr[16];
	unsigned char len;       /* 4 or 16 */
	unsigned conns, streams; /* admitted (not gone), streaming or blocked */
};

struct api_conn {
	struct api_conn *prev, *next; /* in its state's list */
	struct peer *peer;            /* NULL once gone */
	int fd;
	enum conn_state state;
	int64_t since_ms; /* when it entered the state */
};

struct conn_list {
	struct api_conn *head, *tail; /* oldest first */
	size_t n;
};

struct api_conns {
	pthread_mutex_t mu;
	pthread_cond_t wake;
	pthread_t guard;
	bool stopping;
	struct api_conn_limits lim;
	struct conn_list lists[N_STATES];
	struct peer **buckets; /* a power of two of them */
	size_t n_buckets, n_peers;
	uint64_t refused[N_RF], evicted, timeouts[2]; /* head, body */
	uint64_t logged;     /* refused + evicted + suppressed, */
	int64_t logged_ms;   /* at the last line */
	uint64_t suppressed; /* libmicrohttpd's lines not logged */
	unsigned log_lines;  /* its lines in this window */
	int64_t log_window_ms;
};

/* ---- lists ------------------------------------------------------------ */

static void unlink_conn(struct api_conns *t, struct api_conn *k)
{
	struct conn_list *l = &t->lists[k->state];

	if (k->prev)
		k->prev->next = k->next;
	else
		l->head = k->next;
	if (k->next)
		k->next->prev = k->prev;
	else
		l->tail = k->prev;
	k->prev = k->next = NULL;
	l->n--;
}

/* Append k to state's list (now the newest there). */
static void enter(struct api_conns *t, struct api_conn *k,
		  enum conn_state state, int64_t now)
{
	struct conn_list *l = &t->lists[state];

	k->state = state;
	k->since_ms = now;
	k->prev = l->tail;
	k->next = NULL;
	if (l->tail)
		l->tail->next = k;
	else
		l->head = k;
	l->tail = k;
	l->n++;
	/* A list's first entry sets the guard's next deadline. */
	if (l->n == 1 && (state == ST_WAITING || state == ST_BODY))
		pthread_cond_signal(&t->wake);
}

static void move(struct api_conns *t, struct api_conn *k, enum conn_state state)
{
	unlink_conn(t, k);
	enter(t, k, state, clock_mono_ms());
}

static size_t admitted(const struct api_conns *t)
{
	size_t n = 0;

	for (int s = 0; s < ST_GONE; s++)
		n += t->lists[s].n;
	return n;
}

/* ---- peers ------------------------------------------------------------ */

static bool peer_key(const struct sockaddr *sa, unsigned char *addr,
		     unsigned char *len)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0,    0,
						  0, 0, 0, 0, 0xff, 0xff };

	if (sa && sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		*len = 4;
		return true;
	}
	if (sa && sa->sa_family == AF_INET6) {
		const unsigned char *a6 =
			((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

		*len = memcmp(a6, mapped, 12) == 0 ? 4 : 16;
		memcpy(addr, *len == 4 ? a6 + 12 : a6, *len);
		return true;
	}
	return false;
}

static size_t bucket_of(const unsigned char *addr, unsigned char len,
			size_t n_buckets)
{
	uint64_t x = 1469598103934665603ULL; /* FNV-1a */

	for (unsigned char i = 0; i < len; i++)
		x = (x ^ addr[i]) * 1099511628211ULL;
	return (size_t)x & (n_buckets - 1);
}

static struct peer *find_peer(const struct api_conns *t,
			      const unsigned char *addr, unsigned char len)
{
	struct peer *p;

	if (!t->n_buckets)
		return NULL;
	for (p = t->buckets[bucket_of(addr, len, t->n_buckets)]; p; p = p->next)
		if (p->len == len && memcmp(p->addr, addr, len) == 0)
			return p;
	return NULL;
}

/* Double the buckets once there are more peers than buckets. */
static void grow_buckets(struct api_conns *t)
{
	size_t n = t->n_buckets ? t->n_buckets * 2 : 64;
	struct peer **b = calloc(n, sizeof(*b));

	if (!b)
		return; /* longer chains, nothing worse */
	for (size_t i = 0; i < t->n_buckets; i++)
		while (t->buckets[i]) {
			struct peer *p = t->buckets[i];
			size_t k = bucket_of(p->addr, p->len, n);

			t->buckets[i] = p->next;
			p->next = b[k];
			b[k] = p;
		}
	free(t->buckets);
	t->buckets = b;
	t->n_buckets = n;
}

static struct peer *add_peer(struct api_conns *t, const unsigned char *addr,
			     unsigned char len)
{
	struct peer *p;
	size_t k;

	if (t->n_peers >= t->n_buckets)
		grow_buckets(t);
	if (!t->n_buckets || !(p = calloc(1, sizeof(*p))))
		return NULL;
	memcpy(p->addr, addr, len);
	p->len = len;
	k = bucket_of(addr, len, t->n_buckets);
	p->next = t->buckets[k];
	t->buckets[k] = p;
	t->n_peers++;
	return p;
}

static void drop_peer(struct api_conns *t, struct peer *p)
{
	struct peer **pp =
		&t->buckets[bucket_of(p->addr, p->len, t->n_buckets)];

	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	free(p);
	t->n_peers--;
}

/* ---- shutting connections down ------------------------------------------ */

/* Take k out of its address's counts. */
static void release(struct api_conns *t, struct api_conn *k)
{
	struct peer *p = k->peer;

	if (!p)
		return;
	if (k->state == ST_STREAM || k->state == ST_BLOCKED)
		p->streams--;
	if (--p->conns == 0)
		drop_peer(t, p);
	k->peer = NULL;
}

/* Shut k's socket down: libmicrohttpd reads the end and closes it. */
static void cut(struct api_conns *t, struct api_conn *k)
{
	release(t, k);
	move(t, k, ST_GONE);
	if (k->fd >= 0)
		shutdown(k->fd, SHUT_RDWR);
}

/*
 * Whom to evict for a newcomer: the connection that has waited longest
 * without a complete request; else one whose answer has not been taken in
 * header_timeout (a client that pipelines requests and reads nothing holds
 * its connection busy for as long as libmicrohttpd's idle timeout, 30 s,
 * allows: treated like a request that has not come).
 */
static struct api_conn *victim(const struct api_conns *t)
{
	struct api_conn *w = t->lists[ST_WAITING].head;
	struct api_conn *b = t->lists[ST_BODY].head;
	struct api_conn *busy = t->lists[ST_BUSY].head;

	if (w && (!b || w->since_ms <= b->since_ms))
		return w;
	if (b)
		return b;
	if (busy &&
	    busy->since_ms + t->lim.header_timeout_ms <= clock_mono_ms())
		return busy;
	return NULL;
}

/*
 * May a connection from addr come in? Room (evicting if need be) and the
 * address's own cap. RF_* when not, N_RF when it may. evict: also make the
 * room (else only say whether there would be).
 */
static enum refusal admission(struct api_conns *t, const struct peer *p,
			      bool evict)
{
	struct api_conn *k;

	/* Shut down but not yet closed: descriptors all the same. */
	if (t->lists[ST_GONE].n >= API_CONN_SLACK)
		return RF_MAX_HTTP;
	if (p && p->conns >= t->lim.max_http_per_ip)
		return RF_PER_IP;
	if (admitted(t) < t->lim.max_http)
		return N_RF;
	if (!(k = victim(t)))
		return RF_MAX_HTTP;
	if (evict) {
		cut(t, k);
		t->evicted++;
	}
	return N_RF;
}

/* ---- libmicrohttpd's callbacks ------------------------------------------ */

enum MHD_Result api_conns_admit(void *cls, const struct sockaddr *addr,
				socklen_t addrlen)
{
	struct api_conns *t = cls;
	unsigned char key[16], len;
	enum refusal why;

	(void)addrlen;
	if (!peer_key(addr, key, &len))
		return MHD_YES; /* not IP: counted when it starts */
	pthread_mutex_lock(&t->mu);
	why = admission(t, find_peer(t, key, len), false);
	if (why != N_RF)
		t->refused[why]++;
	pthread_mutex_unlock(&t->mu);
	return why == N_RF ? MHD_YES : MHD_NO;
}

static void started(struct api_conns *t, struct MHD_Connection *c,
		    void **socket_context)
{
	const union MHD_ConnectionInfo *fd_info =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	const union MHD_ConnectionInfo *addr_info =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	struct api_conn *k = calloc(1, sizeof(*k));
	unsigned char key[16], len = 0;
	struct peer *p = NULL;
	enum refusal why = N_RF;
	int fd = fd_info ? fd_info->connect_fd : -1;

	if (!k) {
		if (fd >= 0) /* untracked, it could never be cut */
			shutdown(fd, SHUT_RDWR);
		return;
	}
	k->fd = fd;
	*socket_context = k;
	pthread_mutex_lock(&t->mu);
	if (addr_info && peer_key(addr_info->client_addr, key, &len))
		p = find_peer(t, key, len);
	why = admission(t, p, true);
	/* The one evicted may have been p's last connection, and p freed. */
	if (why == N_RF && len && !(p = find_peer(t, key, len)) &&
	    !(p = add_peer(t, key, len)))
		why = RF_MAX_HTTP; /* out of memory */
	if (why == N_RF) {
		k->peer = p;
		if (p)
			p->conns++;
		enter(t, k, ST_WAITING, clock_mono_ms());
	} else {
		t->refused[why]++;
		enter(t, k, ST_GONE, clock_mono_ms());
		if (fd >= 0)
			shutdown(fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&t->mu);
}

static void closed(struct api_conns *t, void **socket_context)
{
	struct api_conn *k = *socket_context;

	if (!k)
		return;
	pthread_mutex_lock(&t->mu);
	release(t, k);
	unlink_conn(t, k);
	pthread_mutex_unlock(&t->mu);
	free(k);
	*socket_context = NULL;
}

void api_conns_notify(void *cls, struct MHD_Connection *c,
		      void **socket_context,
		      enum MHD_ConnectionNotificationCode code)
{
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		started(cls, c, socket_context);
	else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
		closed(cls, socket_context);
}

/* ---- a request's course ------------------------------------------------- */

struct api_conn *api_conns_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return info ? info->socket_context : NULL;
}

/* k goes from one of the states in from (a bit set) to state `to`. */
static void step(struct api_conns *t, struct api_conn *k, unsigned from,
		 enum conn_state to)
{
	if (!k)
		return;
	pthread_mutex_lock(&t->mu);
	if (from & (1u << k->state)) {
		if ((k->state == ST_STREAM || k->state == ST_BLOCKED) &&
		    k->peer)
			k->peer->streams--;
		move(t, k, to);
	}
	pthread_mutex_unlock(&t->mu);
}

void api_conns_head(struct api_conns *t, struct api_conn *k)
{
	step(t, k, 1u << ST_WAITING, ST_BODY);
}

void api_conns_busy(struct api_conns *t, struct api_conn *k)
{
	step(t, k, 1u << ST_WAITING | 1u << ST_BODY, ST_BUSY);
}

void api_conns_done(struct api_conns *t, struct api_conn *k)
{
	step(t, k,
	     1u << ST_BODY | 1u << ST_BUSY | 1u << ST_STREAM | 1u << ST_BLOCKED,
	     ST_WAITING);
}

void api_conns_unblock(struct api_conns *t, struct api_conn *k)
{
	step(t, k, 1u << ST_BLOCKED, ST_BUSY);
}

/* A busy request becomes long-lived (to: a stream or blocked), if the caps
 * shared by both allow it. */
static const char *long_lived(struct api_conns *t, struct api_conn *k,
			      enum conn_state to)
{
	const char *why = NULL;
	enum refusal r = N_RF;

	if (!k)
		return NULL;
	pthread_mutex_lock(&t->mu);
	if (k->state == ST_BUSY && k->peer) {
		if (t->lists[ST_STREAM].n + t->lists[ST_BLOCKED].n >=
		    t->lim.max_streams)
			r = RF_STREAMS;
		else if (k->peer->streams >= t->lim.max_streams_per_ip)
			r = RF_STREAMS_PER_IP;
		if (r == N_RF) {
			k->peer->streams++;
			move(t, k, to);
		} else {
			t->refused[r]++;
			why = refusal_names[r];
		}
	}
	pthread_mutex_unlock(&t->mu);
	return why;
}

const char *api_conns_stream(struct api_conns *t, struct api_conn *k)
{
	return long_lived(t, k, ST_STREAM);
}

const char *api_conns_block(struct api_conns *t, struct api_conn *k)
{
	return long_lived(t, k, ST_BLOCKED);
}

/* ---- the guard ---------------------------------------------------------- */

/* Cut the connections of a list whose time is up; when the next one's is. */
static int64_t expire(struct api_conns *t, enum conn_state state,
		      int64_t timeout_ms, int64_t now, uint64_t *count)
{
	struct api_conn *k;

	while ((k = t->lists[state].head) && k->since_ms + timeout_ms <= now) {
		cut(t, k);
		(*count)++;
	}
	return k ? k->since_ms + timeout_ms : INT64_MAX;
}

static void *guard_main(void *arg)
{
	struct api_conns *t = arg;

	pthread_mutex_lock(&t->mu);
	while (!t->stopping) {
		int64_t now = clock_mono_ms(), next = now + GUARD_TICK_MS, d;
		uint64_t refused = 0, total;
		struct timespec until;

		d = expire(t, ST_WAITING, t->lim.header_timeout_ms, now,
			   &t->timeouts[0]);
		next = d < next ? d : next;
		d = expire(t, ST_BODY, t->lim.body_timeout_ms, now,
			   &t->timeouts[1]);
		next = d < next ? d : next;
		for (int r = 0; r < N_RF; r++)
			refused += t->refused[r];
		total = refused + t->evicted + t->suppressed;
		if (total != t->logged &&
		    now - t->logged_ms >= ADMISSION_LOG_MS) {
			uint64_t evicted = t->evicted,
				 suppressed = t->suppressed;

			t->logged = total;
			t->logged_ms = now;
			pthread_mutex_unlock(&t->mu);
			log_warn("http admission",
				 "refused=%llu evicted=%llu "
				 "suppressed=%llu note=\"in all so far: "
				 "connections refused or evicted "
				 "(limits.max_http, "
				 "max_http_per_ip, max_streams; /metrics has "
				 "them "
				 "by reason), libmicrohttpd lines past %d per "
				 "10 s "
				 "not logged\"",
				 (unsigned long long)refused,
				 (unsigned long long)evicted,
				 (unsigned long long)suppressed, MHD_LOG_BURST);
			pthread_mutex_lock(&t->mu);
			continue;
		}
		until = clock_mono_ts(next);
		pthread_cond_timedwait(&t->wake, &t->mu, &until);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* libmicrohttpd logs some things once per connection (a client gone
 * mid-request, as every connection we cut is): a flood of them must not
 * fill the disk. */
bool api_conns_may_log(struct api_conns *t)
{
	int64_t now = clock_mono_ms();
	bool ok;

	pthread_mutex_lock(&t->mu);
	if (now - t->log_window_ms >= ADMISSION_LOG_MS) {
		t->log_window_ms = now;
		t->log_lines = 0;
	}
	ok = t->log_lines < MHD_LOG_BURST;
	if (ok)
		t->log_lines++;
	else
		t->suppressed++;
	pthread_mutex_unlock(&t->mu);
	return ok;
}

/* ---- the table ---------------------------------------------------------- */

struct api_conns *api_conns_new(const struct api_conn_limits *lim)
{
	struct api_conns *t = calloc(1, sizeof(*t));
	pthread_condattr_t attr;

	if (!t)
		return NULL;
	t->lim = *lim;
	t->logged_ms = t->log_window_ms = -ADMISSION_LOG_MS;
	pthread_mutex_init(&t->mu, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&t->wake, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&t->guard, NULL, guard_main, t) != 0) {
		pthread_cond_destroy(&t->wake);
		pthread_mutex_destroy(&t->mu);
		free(t);
		return NULL;
	}
	return t;
}

void api_conns_set_limits(struct api_conns *t,
			  const struct api_conn_limits *lim)
{
	pthread_mutex_lock(&t->mu);
	t->lim = *lim;
	pthread_cond_signal(&t->wake);
	pthread_mutex_unlock(&t->mu);
}

/* After libmicrohttpd has stopped: every connection has closed by then. */
void api_conns_free(struct api_conns *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->stopping = true;
	pthread_cond_signal(&t->wake);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->guard, NULL);
	for (size_t i = 0; i < t->n_buckets; i++)
		while (t->buckets[i]) {
			struct peer *p = t->buckets[i];

			t->buckets[i] = p->next;
			free(p);
		}
	free(t->buckets);
	pthread_cond_destroy(&t->wake);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* One sample per label value: name{key="names[i]"} values[i]. */
static void samples(struct metrics_text *m, const char *name, const char *key,
		    const char *const *names, const double *values, int n)
{
	char label[64];

	for (int i = 0; i < n; i++) {
		snprintf(label, sizeof(label), "%s=\"%s\"", key, names[i]);
		metrics_sample(m, name, label, values[i]);
	}
}

void api_conns_metrics(struct api_conns *t, struct metrics_text *m)
{
	static const char *const phases[2] = { "head", "body" };
	double open[N_STATES], refused[N_RF], timeouts[2], evicted;

	pthread_mutex_lock(&t->mu);
	for (int s = 0; s < N_STATES; s++)
		open[s] = (double)t->lists[s].n;
	for (int r = 0; r < N_RF; r++)
		refused[r] = (double)t->refused[r];
	timeouts[0] = (double)t->timeouts[0];
	timeouts[1] = (double)t->timeouts[1];
	evicted = (double)t->evicted;
	pthread_mutex_unlock(&t->mu);

	metrics_family(m, "discovery_http_connections", "gauge",
		       "Open HTTP connections, by state (docs/design.md).");
	samples(m, "discovery_http_connections", "state", state_names, open,
		N_STATES);
	metrics_family(m, "discovery_http_refused_total", "counter",
		       "HTTP connections refused, and live streams and "
		       "blocking queries refused with 503, by the limit "
		       "they met.");
	samples(m, "discovery_http_refused_total", "reason", refusal_names,
		refused, N_RF);
	metrics_family(m, "discovery_http_evicted_total", "counter",
		       "Connections with no complete request closed to make "
		       "room for a new one at limits.max_http.");
	metrics_sample(m, "discovery_http_evicted_total", NULL, evicted);
	metrics_family(m, "discovery_http_timeouts_total", "counter",
		       "Connections closed for taking longer than "
		       "limits.header_timeout or body_timeout.");
	samples(m, "discovery_http_timeouts_total", "phase", phases, timeouts,
		2);
}
