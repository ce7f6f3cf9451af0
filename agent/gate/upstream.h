/*
 * upstream: the gate's HTTP/1.1 client to the app, one exchange at a time
 * per connection, on keep-alive connections pooled per worker thread.
 *
 * The owner of an exchange (the client side, client.c) fills in the
 * request (head in `out`, body streamed through `up`), starts it, and
 * hears back through the table of functions it hands over (`ops`): the
 * response head is ready, body bytes are in `down`, `up` has room again,
 * the exchange is over. No function of the table is called from inside
 * another upstream_* call but upstream_start, upstream_send and
 * upstream_recv, and never from inside http-parser: after a callback
 * returns, upstream.c looks at the exchange again only if it is still in
 * flight. Why a client of its own: docs/gate.md, "The upstream client".
 *
 * Responses are parsed by http-parser (nodejs); nothing here parses HTTP
 * by hand. A pooled connection that died between two requests (the app
 * closed it as we sent) is retried on another when neither a response
 * byte came nor a body byte left; any other failure before the response
 * head is a 502 (504 past timeouts.upstream).
 */
#ifndef GATE_UPSTREAM_H
#define GATE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <http_parser.h>

#include "gconf.h"
#include "loop.h"
#include "ring.h"

#define UPSTREAM_ADDRS_MAX 8 /* upstream addresses tried in turn */

struct exchange;
struct uconn;

struct upstream_ops {
	/* The final response head is in x->head; x->status, x->resp_length. */
	void (*head)(struct exchange *x);
	/* Body bytes are in x->down. */
	void (*body)(struct exchange *x);
	/* x->up has room again: the owner may feed more of the body. */
	void (*room)(struct exchange *x);
	/* The exchange is over: why is NULL when the whole response came,
	 * else the failure, with status 502/503/504 when no head came. The
	 * upstream side no longer touches x once this is called. */
	void (*done)(struct exchange *x, unsigned status, const char *why);
};

/* Each worker's connections to the app. */
struct upstream_pool {
	struct loop *loop;
	const struct gconf *conf;
	struct uconn *idle; /* most recently used first */
	size_t n_idle;
	struct exchange *active; /* in flight: their deadlines */
	struct sockaddr_storage addrs[UPSTREAM_ADDRS_MAX];
	socklen_t addr_lens[UPSTREAM_ADDRS_MAX];
	size_t n_addrs;
	long long addrs_until; /* resolve again after this */
};

struct exchange {
	/* the owner's, set before upstream_start */
	const struct upstream_ops *ops;
	void *owner;
	const char *uri;        /* for the log */
	struct buf out;         /* the request head, then chunk framing */
	struct ring up;         /* request body bytes, decoded */
	bool up_eof;            /* the whole body is in `up` */
	struct framing framing; /* how the body goes: FRAME_LENGTH
				 * (left 0: none) or FRAME_CHUNKED */
	bool upgrade;           /* a request to switch protocols */
	bool is_head;
	bool idempotent;  /* may be sent again (RFC 9110 9.2.2) */
	struct ring down; /* response body bytes, decoded */

	/* the response, for the owner to read */
	struct buf head; /* "name\0value\0" ... */
	unsigned status;
	long long resp_length; /* Content-Length; -1: none */
	bool head_done;

	/* private to upstream.c */
	struct upstream_pool *pool;
	struct uconn *uc;
	http_parser parser;
	int field_state; /* 0, 1 in a name, 2 in a value */
	bool in_flight;
	bool interim;  /* a 1xx head is being read */
	bool head_new; /* the head completed in this read */
	bool resp_started, complete, switched;
	bool bad_byte; /* a control byte in the response head */
	bool sent, recv_paused;
	struct soon send_soon; /* send at the end of the pass */
	long long deadline_ms;
	struct exchange *prev, *next;
};

void upstream_pool_init(struct upstream_pool *p, struct loop *loop,
			const struct gconf *conf);
/* Close the idle connections (the worker stops; nothing is in flight). */
void upstream_pool_close(struct upstream_pool *p);

/* Begin x (its head is in x->out). */
void upstream_start(struct upstream_pool *p, struct exchange *x);
/* The owner added body bytes to x->up, or set x->up_eof. */
void upstream_send(struct exchange *x);
/* The owner took bytes from x->down: read the app again. */
void upstream_recv(struct exchange *x);
/* The owner gives x up (its client is gone): no callback follows. */
void upstream_abort(struct exchange *x);
/* After a 101 head: the socket is the owner's now (what followed the
 * head is in x->down). -1 if x has no connection. */
int upstream_detach(struct exchange *x);
/* Fail what is past its deadline; the next deadline, or -1. */
long long upstream_deadlines(struct upstream_pool *p, long long now);

#endif
