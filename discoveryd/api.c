/*
 * api: the HTTP API (see api.h) on libmicrohttpd: the daemon and its TLS,
 * the per-request state from the first byte to completion (body collected
 * up to limits.max_message: 413 past it, said as soon as Content-Length
 * shows it, else when the cap is crossed), the request counters, and the
 * answers every route uses. The routes themselves are in api_route.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "api_int.h"
#include "clock.h"
#include "conf.h"
#include "hub.h"
#include "log.h"
#include "proto.h"

static const char *const route_names[R_COUNT] = {
	"other",
	"/healthz",
	"/metrics",
	"/api/discovery/cacheready",
	"/api/discovery/services",
	"/api/discovery/services/{name}",
	"/api/discovery/services/{name}/{declaration}",
	"/api/discovery/agents",
	"/api/discovery/events",
	"/api/discovery/invalidate",
	"/api/discovery/broadcast",
	"/",
	"/api/discovery/info",
	"/api/discovery/nodes/{node}/drain",
	"/api/discovery/webhooks",
	"/api/discovery/sd/prometheus",
};

static const unsigned codes[API_CODES] = {
	200, 202, 204, 400, 401, 403, 404, 405,
	409, 413, 421, 422, 431, 500, 503, 0 /* other */
};
#define N_CODES API_CODES

/* ---- answers ------------------------------------------------------------ */

enum MHD_Result api_send_json(struct MHD_Connection *c, int status, char *body)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!body)
		body = strdup("{}");
	r = MHD_create_response_from_buffer(strlen(body), body,
					    MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"application/json");
	ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result api_send_error(struct MHD_Connection *c, int status,
			       const char *code, const char *fmt, ...)
{
	char message[256];
	cJSON *o = cJSON_CreateObject();
	char *body;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(o, "error", code);
	cJSON_AddStringToObject(o, "message", message);
	body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return api_send_json(c, status, body);
}

/* A JSON body (copied) with one header besides Content-Type. */
static enum MHD_Result send_with_header(struct MHD_Connection *c,
					unsigned status, const char *body,
					const char *header, const char *value)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(strlen(body), (void *)body,
					    MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"application/json");
	MHD_add_response_header(r, header, value);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result api_send_json_with(struct MHD_Connection *c, int status,
				   char *body, const char *header,
				   const char *value)
{
	enum MHD_Result ret;

	if (!body)
		return MHD_NO;
	ret = send_with_header(c, (unsigned)status, body, header, value);
	free(body);
	return ret;
}

enum MHD_Result api_send_405(struct MHD_Connection *c, const char *allow)
{
	char body[160];

	snprintf(body, sizeof(body),
		 "{\"error\":\"method_not_allowed\",\"message\":\"use %s\"}",
		 allow);
	return send_with_header(c, MHD_HTTP_METHOD_NOT_ALLOWED, body,
				MHD_HTTP_HEADER_ALLOW, allow);
}

enum MHD_Result api_send_full(struct MHD_Connection *c, const char *limit)
{
	char body[200];

	snprintf(body, sizeof(body),
		 "{\"error\":\"full\",\"message\":\"too "
		 "many live streams (limits.%s); try again later\"}",
		 limit);
	return send_with_header(c, MHD_HTTP_SERVICE_UNAVAILABLE, body,
				MHD_HTTP_HEADER_RETRY_AFTER, "5");
}

/* 401 (with WWW-Authenticate, RFC 6750) or 403. */
enum MHD_Result api_send_denied(struct MHD_Connection *c,
				const struct auth_result *ar)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	cJSON *o = cJSON_CreateObject();
	char *body;

	cJSON_AddStringToObject(o, "error", ar->error);
	cJSON_AddStringToObject(o, "message", ar->message);
	body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!body)
		return MHD_NO;
	r = MHD_create_response_from_buffer(strlen(body), body,
					    MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"application/json");
	if (ar->status == 401)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"discovery\"");
	ret = MHD_queue_response(c, (unsigned)ar->status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result api_call_hub(struct api *a, struct MHD_Connection *c,
			     struct hub_req *req)
{
	store_call(a->store, req);
	return api_send_json(c, req->status, req->body);
}

static enum MHD_Result answer_write(struct MHD_Connection *c,
				    struct hub_req *req)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (!req->replayed)
		return api_send_json(c, req->status, req->body);
	if (!req->body)
		req->body = strdup("{}");
	if (!req->body)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(req->body), req->body,
					       MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				"application/json");
	MHD_add_response_header(resp, "Idempotent-Replayed", "true");
	ret = MHD_queue_response(c, (unsigned)req->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/*
 * The hub thread, or the store's (store_submit): the write is answered;
 * libmicrohttpd calls handler again
 * (or, its client gone, completes the request). r may go the moment the
 * connection is resumed. It stays in writes_away until completed: its
 * answer sent, or its client gone. A stop that went on at the resume
 * would close the connection before the answer is out.
 */
static void write_done(struct hub_req *req, void *arg)
{
	struct request *r = arg;

	(void)req;
	MHD_resume_connection(r->mhd);
}

/*
 * A write goes to the hub without holding this thread: the connection is
 * suspended (before the hub can be done with it) and resumed once the
 * hub has answered, after the group commit that made it durable. So two
 * HTTP threads keep any number of writes in flight, and many share one
 * fdatasync. Without memory for the copy, or with a store that answers
 * on this thread, the call waits here.
 */
enum MHD_Result api_call_write(struct api *a, struct MHD_Connection *c,
			       struct request *r, struct hub_req *req)
{
	memcpy(req->idem_key, r->idem_key, sizeof(req->idem_key));
	memcpy(req->idem_fp, r->idem_fp, sizeof(req->idem_fp));
	/* Counted before the flag is read, the flag set before the count
	 * is (quiet_writes): one of the two sees the other. */
	atomic_fetch_add(&a->writes_away, 1);
	if (!atomic_load(&a->writes_wait) && store_async(a->store) &&
	    (r->call = malloc(sizeof(*req)))) {
		*r->call = *req;
		r->mhd = c;
		r->api = a;
		r->away = true;
		MHD_suspend_connection(c);
		store_submit(a->store, r->call, write_done, r);
		return MHD_YES;
	}
	atomic_fetch_sub(&a->writes_away, 1);
	store_call(a->store, req);
	return answer_write(c, req);
}

/*
 * Before libmicrohttpd stops: new writes wait on their thread (as its
 * stop expects), and those the hub has are let finish, answered on
 * resumed connections (those still queued for the store's threads, not
 * begun, are answered 503 stopping: store_shed). The hub runs meanwhile,
 * so this is a commit's time; the deadline only keeps a hub that stopped
 * answering from holding the stop for ever. It is never shorter than the
 * longest call of a store whose calls block (a write on a frozen Redis
 * holds its thread for its timeouts): libmicrohttpd aborts a stop that
 * finds a connection still suspended.
 */
static void quiet_writes(struct api *a)
{
	int64_t wait_ms = a->store->call_max_ms + 1000 > 30000 ?
				  a->store->call_max_ms + 1000 :
				  30000;
	int64_t deadline = clock_mono_ms() + wait_ms;

	atomic_store(&a->writes_wait, true);
	store_shed(a->store, true);
	while (atomic_load(&a->writes_away) && clock_mono_ms() < deadline)
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	if (atomic_load(&a->writes_away))
		log_error("http", "note=\"writes still with the hub at "
				  "stop\"");
}

/* The write r->call, answered (c is resumed): its answer goes now. */
static enum MHD_Result answer_call(struct request *r, struct MHD_Connection *c)
{
	struct hub_req *req = r->call;
	enum MHD_Result ret;

	r->call = NULL;
	ret = answer_write(c, req);
	cJSON_Delete(req->header);
	cJSON_Delete(req->value);
	free(req);
	return ret;
}

/* A write answered whose answer never went (its client left). */
static void drop_call(struct request *r)
{
	struct hub_req *req = r->call;

	r->call = NULL;
	cJSON_Delete(req->header);
	cJSON_Delete(req->value);
	free(req->body);
	free(req);
}

/* ---- request counters ---------------------------------------------------- */

void api_set_webhooks(struct api *a, struct webhook *w)
{
	atomic_store_explicit(&a->webhooks, w, memory_order_release);
}

void api_add_metrics(struct api *a, api_metrics_fn fn, void *arg)
{
	atomic_store_explicit(&a->more_metrics_arg, arg, memory_order_relaxed);
	atomic_store_explicit(&a->more_metrics, fn, memory_order_release);
}

void api_http_metrics(struct api *a, struct metrics_text *t)
{
	api_metrics_fn more =
		atomic_load_explicit(&a->more_metrics, memory_order_acquire);
	char label[160];

	api_conns_metrics(a->conns, t);
	api_blocks_metrics(a->blocks, t);
	metrics_family(t, "discovery_http_requests_total", "counter",
		       "HTTP API requests answered, by route and status code.");
	for (int r = 0; r < R_COUNT; r++)
		for (size_t k = 0; k < N_CODES; k++) {
			uint64_t n = atomic_load_explicit(&a->requests[r][k],
							  memory_order_relaxed);

			if (!n)
				continue;
			if (codes[k])
				snprintf(label, sizeof(label),
					 "route=\"%s\",code=\"%u\"",
					 route_names[r], codes[k]);
			else
				snprintf(label, sizeof(label),
					 "route=\"%s\",code=\"other\"",
					 route_names[r]);
			metrics_sample(t, "discovery_http_requests_total",
				       label, (double)n);
		}
	if (more)
		more(atomic_load_explicit(&a->more_metrics_arg,
					  memory_order_relaxed),
		     t);
}

/* ---- libmicrohttpd glue ------------------------------------------------- */

static void count_request(struct api *a, struct MHD_Connection *c,
			  enum route route)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
	unsigned status = ci ? ci->http_status : 0;
	size_t k = 0;

	while (codes[k] && codes[k] != status)
		k++;
	atomic_fetch_add_explicit(&a->requests[route][k], 1,
				  memory_order_relaxed);
}

/*
 * A response was queued: count it now, not when libmicrohttpd completes
 * the request, so a client that reads /metrics right after an answer sees
 * that answer counted.
 */
static enum MHD_Result counted(struct api *a, struct MHD_Connection *c,
			       const struct request *r, enum MHD_Result ret)
{
	/* A blocked query or a write in the hub has no answer yet: counted
	 * when it has. */
	if (ret == MHD_YES && !r->block && !r->call)
		count_request(a, c, r->route);
	return ret;
}

static enum MHD_Result send_too_large(struct api *a, struct MHD_Connection *c,
				      const struct request *r, size_t cap)
{
	return counted(a, c, r,
		       api_send_error(c, 413, "too_large",
				      "the body is over limits.max_message "
				      "(%zu bytes)",
				      cap));
}

/* The first call, headers read: is the body refused already, and must the
 * answer go now (the client waits for 100 Continue, or announced more than
 * is worth draining)? */
static bool refuse_early(struct MHD_Connection *c, struct request *r,
			 size_t cap)
{
	const char *cl =
		MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					    MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *expect =
		MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					    MHD_HTTP_HEADER_EXPECT);
	uint64_t n;

	/* libmicrohttpd refused a Content-Length that is not a number; one
	 * with leading zeros is left to the cap as the body comes. */
	if (!cl || !proto_parse_u64(cl, strlen(cl), &n) || n <= cap)
		return false;
	r->too_big = true;
	return (expect && strcasecmp(expect, "100-continue") == 0) ||
	       n - cap > API_DRAIN_MAX;
}

/*
 * A request's con_cls until its first call, when its URI is refused
 * before libmicrohttpd parses it (uri_seen, its URI log callback):
 *
 * - a query of more than API_QUERY_MAX parameters. libmicrohttpd 0.9.75
 *   keeps each in the connection's 32 KiB pool, and when the pool runs
 *   out (about 600 of them, a 7 KB URL) it logs a 431 it never sends:
 *   the client hung until header_timeout. The query is ended at its '?'
 *   (in the connection's own buffer, which the parse reads it from), and
 *   the first call answers 414;
 * - a %00 anywhere: decoded, it cut a value (?tag=blue%00x read as blue)
 *   or a path (services/web%00x as services/web). 400.
 */
static char too_many_params, nul_in_uri;

static void *uri_seen(void *cls, const char *uri, struct MHD_Connection *c)
{
	char *q = strchr(uri, '?');
	size_t n = 1;

	(void)cls;
	(void)c;
	if (strstr(uri, "%00"))
		return &nul_in_uri;
	if (!q)
		return NULL;
	for (const char *p = q; *p; p++)
		n += *p == '&';
	if (n <= API_QUERY_MAX)
		return NULL;
	q[1] = '\0';
	return &too_many_params;
}

/* The first call of a request uri_seen refused. */
static enum MHD_Result send_uri_refusal(struct MHD_Connection *c,
					const void *why)
{
	if (why == &too_many_params)
		return api_send_error(c, 414, "uri_too_long",
				      "the query has more than %d parameters",
				      API_QUERY_MAX);
	return api_send_error(c, 400, "bad_request",
			      "the URI has a %%00 (a NUL) in it");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
			       const char *url, const char *method,
			       const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct api *a = cls;
	struct request *r = *con_cls;
	size_t cap = atomic_load(&a->max_body);
	const void *refused = r == (void *)&too_many_params ||
					      r == (void *)&nul_in_uri ?
				      *con_cls :
				      NULL;

	(void)version;
	if (!r || refused) {
		r = calloc(1, sizeof(*r));
		*con_cls = r;
		if (!r)
			return MHD_NO;
		r->conn = api_conns_of(c);
		api_conns_head(a->conns, r->conn);
		if (refused)
			return send_uri_refusal(c, refused);
		return refuse_early(c, r, cap) ? send_too_large(a, c, r, cap) :
						 MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;

		*upload_size = 0;
		if (!r->too_big && r->len + n <= cap) {
			char *grown = realloc(r->body, r->len + n + 1);

			if (!grown)
				return MHD_NO;
			r->body = grown;
			memcpy(r->body + r->len, upload, n);
			r->len += n;
			r->body[r->len] = '\0';
			return MHD_YES;
		}
		/* Dropped, counted: the body is refused and only drained. */
		r->too_big = true;
		r->dropped += n;
		if (r->len + r->dropped > cap + API_DRAIN_MAX)
			return send_too_large(a, c, r, cap);
		return MHD_YES;
	}
	if (r->call) /* resumed: the hub has answered the write */
		return counted(a, c, r, answer_call(r, c));
	api_conns_busy(a->conns, r->conn);
	if (r->block) { /* a blocking query woke: its answer goes now */
		api_block_done(a->blocks, r);
		api_conns_unblock(a->conns, r->conn);
		r->woke = true;
	}
	if (r->too_big)
		return send_too_large(a, c, r, cap);
	return counted(a, c, r, api_route(a, c, url, method, r));
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct api *a = cls;
	struct request *r = *con_cls;

	(void)c;
	(void)toe;
	if (r == (void *)&too_many_params || r == (void *)&nul_in_uri) {
		/* gone before its first call */
		*con_cls = NULL;
		return;
	}
	if (r) {
		api_block_done(a->blocks, r); /* the peer left, or we stop */
		api_conns_done(a->conns, r->conn);
		/* Resumed (a suspended connection is never completed), the
		 * hub is done with it: the answer had no one to go to. */
		if (r->call)
			drop_call(r);
		if (r->away)
			atomic_fetch_sub(&a->writes_away, 1);
	}
	if (r && r->stream) {
		struct hub_req req = { .op = HUB_SSE_CLOSE,
				       .stream = r->stream };

		store_call(a->store, &req);
		free(req.body);
		sse_free(r->stream);
	}
	if (r) {
		free(r->body);
		free(r);
		*con_cls = NULL;
	}
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct api *a = cls;

	if (api_conns_may_log(a->conns))
		log_vtext(LOG_WARN, "http", fmt, ap);
}

/* Start libmicrohttpd on a new socket (sa) or on one it had (fd >= 0). */
static struct MHD_Daemon *start_mhd(struct api *a, const struct sockaddr *sa,
				    int fd)
{
	/* MHD_USE_ITC: a reload hands the listening socket over with
	 * MHD_quiesce_daemon, which needs it in the thread-pool mode. */
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
			 MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
	struct MHD_OptionItem opts[16];
	size_t n = 0;

#define OPT(o, v, p)                                                           \
	(opts[n++] = (struct MHD_OptionItem){ (o), (intptr_t)(v), (p) })
	if (sa)
		OPT(MHD_OPTION_SOCK_ADDR, 0, (void *)sa);
	else
		OPT(MHD_OPTION_LISTEN_SOCKET, fd, NULL);
	OPT(MHD_OPTION_THREAD_POOL_SIZE, a->threads, NULL);
	/* api_conn.c admits, evicts and refuses (and logs none of it one
	 * by one). libmicrohttpd's own limit, which splits evenly among its
	 * threads and then leaves clients in the backlog with a log line
	 * each, is a backstop each thread can never reach. */
	OPT(MHD_OPTION_CONNECTION_LIMIT,
	    a->threads * (a->max_http + 2 * API_CONN_SLACK), NULL);
	OPT(MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)api_conns_notify, a->conns);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, 30, NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, 32 * 1024, NULL);
	OPT(MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, a);
	OPT(MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_seen, NULL);
	if (a->cert) {
		flags |= MHD_USE_TLS;
		OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, a->cert);
		OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, a->key);
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
	if (sa && sa->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The logger goes first so that MHD's own messages about the other
	 * options reach our log; MHD_OPTION_ARRAY cannot carry a function
	 * pointer with its void * argument, so it is given directly. */
	return MHD_start_daemon(flags, 0, api_conns_admit, a->conns, handler, a,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
				MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
}

/* conf's limits for a daemon of max_http connections (max_http needs a
 * restart: a reload keeps the running one, and streams stay within it). */
static void limits_of(const struct dconf *conf, unsigned max_http,
		      struct api_conn_limits *lim)
{
	lim->max_http = max_http;
	lim->max_http_per_ip = (unsigned)conf->max_http_per_ip;
	lim->max_streams = conf->max_streams ? (unsigned)conf->max_streams :
					       max_http / 4;
	if (lim->max_streams > max_http / 2)
		lim->max_streams = max_http / 2;
	if (lim->max_streams == 0)
		lim->max_streams = 1;
	lim->max_streams_per_ip = (unsigned)conf->max_streams_per_ip;
	if (lim->max_streams_per_ip > lim->max_streams)
		lim->max_streams_per_ip = lim->max_streams;
	lim->header_timeout_ms = conf->header_timeout_ms;
	lim->body_timeout_ms = conf->body_timeout_ms;
}

/* Keep copies of the PEM text: libmicrohttpd reads it for as long as the
 * daemon runs. */
static int take_tls(struct api *a, const struct dconf *conf)
{
	char *cert = NULL, *key = NULL;

	if (conf->tls_present) {
		cert = strndup(conf->tls_cert_pem, conf->tls_cert_len);
		key = strndup(conf->tls_key_pem, conf->tls_key_len);
		if (!cert || !key) {
			free(cert);
			free(key);
			return -1;
		}
	}
	a->old_cert = a->cert;
	a->old_key = a->key;
	a->cert = cert;
	a->key = key;
	return 0;
}

static void free_pem(char **pem)
{
	if (*pem) {
		explicit_bzero(*pem, strlen(*pem));
		free(*pem);
		*pem = NULL;
	}
}

struct api *api_start(const struct dconf *conf, struct hub *hub,
		      struct store *store, struct auth *auth, char *err,
		      size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	struct conf_addr bound = conf->listen_http;
	struct api_conn_limits lim;
	char addr[CONF_ADDR_TEXT];

	conf_addr_format(&conf->listen_http, addr, sizeof(addr));
	if (!a || conf_addr_resolve(&conf->listen_http, "listen.http", &ss, err,
				    errlen) != 0) {
		free(a);
		return NULL;
	}
	a->hub = hub;
	a->store = store;
	a->auth = auth;
	a->origin = api_origin_new(conf);
	if (!a->origin) {
		snprintf(err, errlen, "out of memory");
		free(a);
		return NULL;
	}
	a->threads = (unsigned)conf->http_threads;
	a->max_http = (unsigned)conf->max_http;
	atomic_store(&a->max_body, (size_t)conf->max_message);
	limits_of(conf, a->max_http, &lim);
	a->conns = api_conns_new(&lim);
	a->blocks = api_blocks_new(hub_epboard(hub));
	if (a->conns && a->blocks && take_tls(a, conf) == 0)
		a->mhd = start_mhd(a, (struct sockaddr *)&ss, -1);
	if (!a->mhd) {
		snprintf(err, errlen, "cannot listen for HTTP%s on %s",
			 conf->tls_present ? "S" : "", addr);
		free_pem(&a->cert);
		free_pem(&a->key);
		api_conns_free(a->conns);
		api_blocks_free(a->blocks);
		api_origin_free(a->origin);
		free(a);
		return NULL;
	}
	info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT);
	if (info)
		bound.port = info->port;
	if (!bound.host[0])
		snprintf(bound.host, sizeof(bound.host), "0.0.0.0");
	conf_addr_format(&bound, a->listen_address, sizeof(a->listen_address));
	return a;
}

const char *api_listen_address(const struct api *a)
{
	return a->listen_address;
}

/*
 * libmicrohttpd cannot swap certificates in place: a new daemon takes over
 * the listening socket (MHD_quiesce_daemon hands it over), the old one
 * finishes the requests in flight and stops. If the new certificate does
 * not load, the old daemon's certificate serves again.
 */
static void reload_tls(struct api *a, const struct dconf *conf)
{
	struct MHD_Daemon *fresh;
	MHD_socket fd;

	if (!conf->tls_present || take_tls(a, conf) != 0)
		return;
	fd = MHD_quiesce_daemon(a->mhd);
	if (fd == MHD_INVALID_SOCKET) {
		log_warn("reload", "note=\"https kept its old certificate\"");
		free_pem(&a->cert);
		free_pem(&a->key);
		a->cert = a->old_cert;
		a->key = a->old_key;
		return;
	}
	fresh = start_mhd(a, NULL, fd);
	if (fresh) {
		/* Live streams on the old daemon end (clients come back with
		 * Last-Event-ID); suspended, they would hold its stop up. */
		struct hub_req req = { .op = HUB_SSE_END_ALL };

		store_call(a->store, &req);
		free(req.body);
	}
	if (!fresh) {
		log_error("reload", "note=\"the new certificate does not load; "
				    "https keeps the old one\"");
		free_pem(&a->cert);
		free_pem(&a->key);
		a->cert = a->old_cert;
		a->key = a->old_key;
		a->old_cert = a->old_key = NULL;
		fresh = start_mhd(a, NULL, fd);
	}
	/* Blocked queries answer now (the old daemon's cannot be told from
	 * the new one's: all do), and come back to the new daemon. */
	api_blocks_stop(a->blocks);
	quiet_writes(a);
	MHD_stop_daemon(a->mhd);
	store_shed(a->store, false);
	atomic_store(&a->writes_wait, false);
	api_blocks_start(a->blocks);
	a->mhd = fresh;
	free_pem(&a->old_cert);
	free_pem(&a->old_key);
	if (!fresh)
		log_error("reload", "note=\"the HTTP API stopped listening\"");
}

void api_reload(struct api *a, const struct dconf *conf)
{
	struct api_conn_limits lim;

	limits_of(conf, a->max_http, &lim);
	api_conns_set_limits(a->conns, &lim);
	atomic_store(&a->max_body, (size_t)conf->max_message);
	if (api_origin_reload(a->origin, conf) != 0)
		log_error("reload", "key=allowed_hosts note=\"out of memory, "
				    "the old names stay\"");
	reload_tls(a, conf);
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	if (a->mhd) {
		/* Live streams end first, blocked queries answer: a
		 * suspended connection would hold MHD_stop_daemon up. */
		struct hub_req req = { .op = HUB_SSE_END_ALL };

		store_call(a->store, &req);
		free(req.body);
		api_blocks_stop(a->blocks);
		quiet_writes(a);
		MHD_stop_daemon(a->mhd);
	}
	free_pem(&a->cert);
	free_pem(&a->key);
	api_conns_free(a->conns);
	api_blocks_free(a->blocks);
	api_origin_free(a->origin);
	free(a);
}
