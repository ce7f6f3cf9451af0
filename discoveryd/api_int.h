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

#include <microhttpd.h>

#include "api.h"
#include "auth.h"
#include "metrics.h"
#include "sse.h"

/* Routes, for discovery_http_requests_total{route,code}. */
enum route {
	R_OTHER = 0, R_HEALTHZ, R_METRICS, R_CACHEREADY, R_SERVICES, R_SERVICE,
	R_DECLARE, R_AGENTS, R_EVENTS, R_INVALIDATE, R_BROADCAST, R_DASHBOARD,
	R_INFO, R_DRAIN, R_COUNT
};

#define API_CODES 13   /* the status codes counted one by one, and "other" */

struct api {
	struct MHD_Daemon *mhd;
	atomic_uint_least64_t requests[R_COUNT][API_CODES];
	struct hub *hub;
	struct auth *auth;
	atomic_size_t max_body;
	unsigned threads, max_http, max_http_per_ip;
	char *cert, *key;             /* PEM text while https runs */
	char *old_cert, *old_key;     /* during a reload */
	char listen_address[300];
};

/* Per-request state, from the first call of the handler to completion. */
struct request {
	char *body;
	size_t len;
	bool too_big;
	enum route route;
	struct sse *stream;       /* a live event stream, while it runs */
};

/* api.c: answers. Each queues one response on c. */
enum MHD_Result api_send_json(struct MHD_Connection *c, int status,
			      char *body);
enum MHD_Result api_send_error(struct MHD_Connection *c, int status,
			       const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
enum MHD_Result api_send_405(struct MHD_Connection *c, const char *allow);
enum MHD_Result api_send_denied(struct MHD_Connection *c,
				const struct auth_result *ar);
enum MHD_Result api_call_hub(struct api *a, struct MHD_Connection *c,
			     struct hub_req *req);
/* api.c: the request counters, as /metrics text. */
void api_http_metrics(struct api *a, struct metrics_text *t);

/* api_route.c: answer one whole request (body already collected). */
enum MHD_Result api_route(struct api *a, struct MHD_Connection *c,
			  const char *url, const char *method,
			  struct request *r);

#endif
