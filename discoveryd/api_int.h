/*
 * api_int: what api.c (libmicrohttpd glue, TLS, request accounting) and
 * api_route.c (routes, body parsing and validation) share. Nothing outside
 * the API includes it.
 */
#ifndef DISCOVERYD_API_INT_H
#define DISCOVERYD_API_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "api.h"
#include "auth.h"
#include "conf.h"
#include "idem.h"
#include "metrics.h"
#include "sse.h"

/* Routes, for discovery_http_requests_total{route,code}. */
enum route {
	R_OTHER = 0,
	R_HEALTHZ,
	R_METRICS,
	R_CACHEREADY,
	R_SERVICES,
	R_SERVICE,
	R_DECLARE,
	R_AGENTS,
	R_EVENTS,
	R_INVALIDATE,
	R_BROADCAST,
	R_DASHBOARD,
	R_INFO,
	R_DRAIN,
	R_WEBHOOKS,
	R_SD,
	R_COUNT
};

#define API_CODES 16 /* the status codes counted one by one, and "other" */

/* Connections shut down by api_conn.c (refused, evicted, timed out) but
 * not yet closed by libmicrohttpd: past this many, new ones are refused.
 * The descriptor budget leaves max_http + 64 to the API (hub.c). */
#define API_CONN_SLACK 32

struct api_conn_limits {
	unsigned max_http, max_http_per_ip;
	unsigned max_streams, max_streams_per_ip;
	int64_t header_timeout_ms, body_timeout_ms;
};

struct api_conns; /* every connection (api_conn.c) */
struct api_conn;  /* one of them */

/* Why a request is refused before any route runs. */
struct api_refusal {
	int status;
	const char *error; /* the JSON body's "error" */
	char message[200];
};

struct api_origin;
struct api_blocks; /* blocked queries (api_block.c) */
struct api_block;  /* one of them */

struct api {
	struct MHD_Daemon *mhd;
	struct api_origin *origin;
	struct api_conns *conns;
	struct api_blocks *blocks;
	atomic_uint_least64_t requests[R_COUNT][API_CODES];
	struct hub *hub;     /* its drain state */
	struct store *store; /* every call */
	struct auth *auth;
	atomic_size_t max_body;
	unsigned threads, max_http;
	char *cert, *key;         /* PEM text while https runs */
	char *old_cert, *old_key; /* during a reload */
	char listen_address[CONF_ADDR_TEXT];
	/* Another module's part of /metrics (api_add_metrics): arg is
	 * stored before fn, fn read before arg. */
	_Atomic(api_metrics_fn) more_metrics;
	void *_Atomic more_metrics_arg;
	/* Writes whose connection is suspended while the hub runs them
	 * (api_call_write), and whether new ones must wait on their thread
	 * instead: libmicrohttpd panics if stopped with a connection
	 * suspended, so a stop lets them finish first (quiet_writes). */
	atomic_uint writes_away;
	atomic_bool writes_wait;
	struct webhook *_Atomic webhooks; /* api_set_webhooks; NULL: none */
};

/*
 * A body over limits.max_message is read and dropped, up to this much past
 * it, before the 413: a client still sending when the connection closes
 * gets a reset instead of its answer (nginx lingers the same way). Past
 * it, or with Expect: 100-continue, the 413 goes at once.
 */
#define API_DRAIN_MAX (1u << 20)
/* Query parameters a request may carry; past it 414 (api.c, uri_seen). */
#define API_QUERY_MAX 128

/* Per-request state, from the first call of the handler to completion. */
struct request {
	char *body;
	size_t len;
	bool too_big;
	size_t dropped; /* body bytes read and dropped */
	enum route route;
	struct sse *stream;      /* a live event stream, while it runs */
	struct api_conn *conn;   /* its connection's entry (NULL: untracked) */
	struct api_block *block; /* a blocking query while it is suspended
				    (api_block.c) */
	bool woke;               /* it was, and is answered now */
	/* A write the hub runs while the connection is suspended (api.c,
	 * api_call_write): answered when libmicrohttpd calls again. */
	struct hub_req *call;
	struct MHD_Connection *mhd;
	struct api *api;
	/* Counted in writes_away until its answer went (completed). */
	bool away;
	/* A write's Idempotency-Key, scoped by its sender ("" = none), and
	 * the request's fingerprint (api_route.c). */
	char idem_key[IDEM_SCOPED_MAX + 1];
	unsigned char idem_fp[IDEM_FP_LEN];
};

/* api.c: answers. Each queues one response on c. */
enum MHD_Result api_send_json(struct MHD_Connection *c, int status, char *body);
/* The same (body taken), with one more header. */
enum MHD_Result api_send_json_with(struct MHD_Connection *c, int status,
				   char *body, const char *header,
				   const char *value);
enum MHD_Result api_send_error(struct MHD_Connection *c, int status,
			       const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
enum MHD_Result api_send_405(struct MHD_Connection *c, const char *allow);
/* 503 full, Retry-After: a live stream over limits.<limit>. */
enum MHD_Result api_send_full(struct MHD_Connection *c, const char *limit);
enum MHD_Result api_send_denied(struct MHD_Connection *c,
				const struct auth_result *ar);
enum MHD_Result api_call_hub(struct api *a, struct MHD_Connection *c,
			     struct hub_req *req);
/* The same for a write: with r's Idempotency-Key, and a replayed answer
 * marked Idempotent-Replayed. The answer may come later: req is copied
 * (header and value taken) and c suspended until the hub has answered. */
enum MHD_Result api_call_write(struct api *a, struct MHD_Connection *c,
			       struct request *r, struct hub_req *req);
/* api.c: the request counters, as /metrics text. */
void api_http_metrics(struct api *a, struct metrics_text *t);

/* api_webhook.c: /api/discovery/webhooks[/NAME[/ACTION]]; rest is what
 * follows "webhooks" ("" or "/..."). */
enum MHD_Result api_route_webhooks(struct api *a, struct MHD_Connection *c,
				   const char *rest, const char *method,
				   const struct request *r);

/* api_sd.c: GET /api/discovery/sd/prometheus (Prometheus's HTTP SD). */
enum MHD_Result api_route_sd(struct api *a, struct MHD_Connection *c,
			     const char *method);

/* api_origin.c: Host, Origin, Sec-Fetch-Site and Referer (see there). */
struct api_origin *api_origin_new(const struct dconf *conf);
/* New allowed names from conf; 0, or -1 (out of memory: the old stay). */
int api_origin_reload(struct api_origin *o, const struct dconf *conf);
void api_origin_free(struct api_origin *o);
/* True when a browser marked the request as foreign; *why says how. */
bool api_origin_refuse(struct api_origin *o, struct MHD_Connection *c,
		       const char *url, const char *method,
		       struct api_refusal *why);

/* api_conn.c: admission, deadlines and stream caps (see there). The
 * table starts its guard thread; free it after libmicrohttpd stopped. */
struct api_conns *api_conns_new(const struct api_conn_limits *lim);
void api_conns_set_limits(struct api_conns *t,
			  const struct api_conn_limits *lim);
void api_conns_free(struct api_conns *t);
/* MHD_OPTION_APPLY_POLICY and MHD_OPTION_NOTIFY_CONNECTION (cls = t). */
enum MHD_Result api_conns_admit(void *cls, const struct sockaddr *addr,
				socklen_t addrlen);
void api_conns_notify(void *cls, struct MHD_Connection *c,
		      void **socket_context,
		      enum MHD_ConnectionNotificationCode code);
/* A request's course on its connection's entry (NULL is a no-op): head
 * read, request complete, request done (waiting for the next). */
struct api_conn *api_conns_of(struct MHD_Connection *c);
void api_conns_head(struct api_conns *t, struct api_conn *k);
void api_conns_busy(struct api_conns *t, struct api_conn *k);
void api_conns_done(struct api_conns *t, struct api_conn *k);
/* Become a live stream: NULL, or the name of the limit that refuses it. */
const char *api_conns_stream(struct api_conns *t, struct api_conn *k);
/* The same for a blocking query (the caps are shared); unblock: it woke
 * and is answered (busy again). */
const char *api_conns_block(struct api_conns *t, struct api_conn *k);
void api_conns_unblock(struct api_conns *t, struct api_conn *k);
void api_conns_metrics(struct api_conns *t, struct metrics_text *m);
/* May libmicrohttpd's next line be logged? At most 20 per 10 s; the guard
 * says how many were not. */
bool api_conns_may_log(struct api_conns *t);

/*
 * api_block.c: blocking queries, ?index=N&wait=D on the endpoints route
 * (docs/api.md). The request's connection is suspended, not its thread:
 * one record each, one thread for every deadline and hang-up.
 */
#define API_BLOCK_WAIT_DEFAULT_MS (5 * 60 * 1000)
#define API_BLOCK_WAIT_MAX_MS     (10 * 60 * 1000)

struct epboard;
/* Blocks wait on board (not owned). NULL when out of resources. */
struct api_blocks *api_blocks_new(struct epboard *board);
/* After libmicrohttpd stopped: no block is left. */
void api_blocks_free(struct api_blocks *t);
/* Wake every blocked query (each answers with what it has), and answer
 * new ones at once until api_blocks_start: libmicrohttpd must never stop
 * with a connection suspended. */
void api_blocks_stop(struct api_blocks *t);
void api_blocks_start(struct api_blocks *t);
/*
 * c's ?index and ?wait: 1 with *index (> 0) and *wait_ms (clamped, jitter
 * not yet added) for a blocking query; 0 for a plain one (no index, or
 * index=0); -1 when one is malformed, with a 400 queued in *ret.
 */
int api_block_parse(struct MHD_Connection *c, uint64_t *index, int64_t *wait_ms,
		    enum MHD_Result *ret);
/*
 * Block r until service's published index passes index, or wait_ms (plus
 * jitter) passes, or the client hangs up: true when c is suspended (return
 * MHD_YES; libmicrohttpd calls the handler again when it wakes, which
 * ends the block and sets r->woke), false when the answer should go now.
 */
bool api_block_begin(struct api_blocks *t, struct MHD_Connection *c,
		     struct request *r, const char *service, uint64_t index,
		     int64_t wait_ms);
/* r's block is over (woken and answering, or the request completed):
 * free it, r->block NULL. */
void api_block_done(struct api_blocks *t, struct request *r);
void api_blocks_metrics(struct api_blocks *t, struct metrics_text *m);

/* api_route.c: answer one whole request (body already collected). */
enum MHD_Result api_route(struct api *a, struct MHD_Connection *c,
			  const char *url, const char *method,
			  struct request *r);

#endif
