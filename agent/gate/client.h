/*
 * client: the gate's side of its clients, one worker's connections. Each
 * connection reads requests, checks their heads strictly (see below),
 * answers them itself (the gate's own endpoints, a locked answer, an
 * error) or proxies them through an exchange (upstream.h), and writes the
 * answer back; after a 101 it becomes a relay (relay.h).
 *
 * The request head is read whole (up to limits.head, within
 * timeouts.header of its first byte) and checked before anything else
 * happens: every line ends in CRLF (a bare CR or LF is refused), no line
 * is folded, and http-parser (nodejs, strict) parses it: a field name is
 * a token (no space before the colon), values hold no control byte,
 * Content-Length is one plain number, Transfer-Encoding is exactly
 * "chunked" and never with Content-Length, HTTP/1.1 has exactly one Host.
 * What fails gets 400 (431, 501, 505) and the connection is closed after a
 * lingering read. The body is then framed by the gate alone, from the same
 * parse, so the app and the gate never disagree on where a request ends.
 */
#ifndef GATE_CLIENT_H
#define GATE_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "admit.h"
#include "forward.h"
#include "gconf.h"
#include "loop.h"
#include "state.h"
#include "upstream.h"

/* What every worker shares. */
struct worker;

struct gate_env {
	const struct gconf *conf;
	struct gate_state *state;
	struct admit *admit;
	struct forward_conf fwd;
	atomic_int busy;         /* requests being answered */
	struct worker **workers; /* all of them: connections are shared out */
	atomic_size_t n_workers; /* how many of those run */
};

#define SPARE_RINGS 64 /* idle pairs of body rings kept per worker */

struct client;

/* One worker's client connections. */
struct clients {
	struct gate_env *env;
	struct loop *loop;
	struct upstream_pool *pool;
	struct client *first, *last; /* oldest first */
	size_t n;
	atomic_long load; /* n, and those on their way here: others read it */
	bool draining;
	char *spare[SPARE_RINGS][2]; /* body rings of finished requests */
	size_t n_spare;
};

void clients_init(struct clients *s, struct gate_env *env, struct loop *loop,
		  struct upstream_pool *pool);
/* A connection admitted (admit_take) from sa: it is the set's now. */
void clients_add(struct clients *s, int fd, const struct sockaddr *sa,
		 socklen_t len);
/* The set is full: close the connection that waited longest for its
 * request (a head still arriving, else an idle keep-alive one). False
 * when every connection is busy with a request. */
bool clients_evict(struct clients *s);
/* Act on the connections past their deadline; the next deadline or -1. */
long long clients_deadlines(struct clients *s, long long now);
/* Stop: idle connections close now, the others after their answer. */
void clients_drain(struct clients *s);
/* Close everything (the worker stops). */
void clients_close_all(struct clients *s);

#endif
