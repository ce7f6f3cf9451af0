/*
 * server: the gate's libmicrohttpd daemon (see server.h). The access
 * handler's first call decides, against one state view, whether the
 * request is the gate's own (state, check), locked (a prebuilt answer) or
 * proxied; later calls of a proxied request go to proxy.c.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"
#include "server.h"
#include "upstream.h"

#define WELL_KNOWN "/.well-known/discovery-gate"
/* Per client connection; a request head must fit. MHD zeroes the pool
 * between requests, so more costs time on every one (64 KiB: 3% of it). */
#define CONNECTION_MEMORY (32 * 1024)

static bool path_is(const char *uri, const char *path)
{
	size_t n = strlen(path);

	return !strncmp(uri, path, n) && (uri[n] == '\0' || uri[n] == '?');
}

static bool wants_html(struct MHD_Connection *conn)
{
	const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							 "Accept");

	return accept && strstr(accept, "text/html");
}

static bool has_body(struct MHD_Connection *conn)
{
	const char *len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						      "Content-Length");

	return (len && strcmp(len, "0")) ||
	       MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
					   "Transfer-Encoding");
}

/*
 * The gate's own answers: state, check, locked. Queued on the handler's
 * second call when there is no body (an answer queued on the first call
 * makes libmicrohttpd close the connection), else at once (the body is
 * then not read at all). The view is loaded again here: whichever view it
 * is, its answers are whole ones.
 */
static enum MHD_Result answer_own(struct preq *r, struct MHD_Connection *conn)
{
	const struct gate_view *v = gstate_view(r->server->state);
	struct MHD_Response *resp = v->locked_json;
	unsigned status = v->locked_status;

	r->answered = true;
	if (r->answer == ANSWER_STATE) {
		resp = v->state_json;
		status = MHD_HTTP_OK;
	} else if (r->answer == ANSWER_CHECK) {
		resp = v->check;
		status = v->open ? MHD_HTTP_NO_CONTENT : MHD_HTTP_FORBIDDEN;
	} else if (r->answer == ANSWER_HTML) {
		resp = v->locked_html;
	}
	/* MHD_queue_response takes its own reference: the view may go. */
	return MHD_queue_response(conn, status, resp);
}

/* The first call: the gate's own answer, locked, or proxy. */
static enum MHD_Result decide(struct gate_server *s, struct preq *r,
			      struct MHD_Connection *conn, const char *method,
			      const char *version)
{
	const struct gate_view *v = gstate_view(s->state);

	if (path_is(r->uri, WELL_KNOWN))
		r->answer = ANSWER_STATE;
	else if (path_is(r->uri, WELL_KNOWN "/check"))
		r->answer = ANSWER_CHECK;
	else if (v->open || gview_passes(v, r->uri)) {
		r->proxied = true;
		return proxy_begin(r, conn, method, version);
	} else
		r->answer = wants_html(conn) ? ANSWER_HTML : ANSWER_JSON;
	return has_body(conn) ? answer_own(r, conn) : MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **req_cls)
{
	struct gate_server *s = cls;
	struct preq *r = *req_cls;

	(void)url; /* unescaped and without the query: r->uri is the raw one */
	if (!r)
		return MHD_NO; /* out of memory at the URI callback */
	if (!r->started) {
		r->started = true;
		return decide(s, r, conn, method, version);
	}
	if (r->proxied)
		return proxy_continue(r, conn, upload, upload_size);
	if (r->answer && !r->answered && !*upload_size)
		return answer_own(r, conn);
	*upload_size = 0; /* answered already: a body is not read */
	return MHD_YES;
}

/* The raw request target, before MHD splits and unescapes it. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct gate_server *s = cls;

	(void)conn;
	atomic_fetch_add(&s->in_flight, 1);
	return preq_new(s, uri);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
			 void **req_cls, enum MHD_RequestTerminationCode toe)
{
	struct gate_server *s = cls;
	struct preq *r = *req_cls;

	(void)conn;
	(void)toe;
	*req_cls = NULL;
	if (r && r->proxied)
		proxy_end(r);
	else
		preq_unref(r);
	atomic_fetch_sub(&s->in_flight, 1);
}

/* Leave every byte as sent: the upstream does its own decoding. */
static size_t no_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	log_vtext(LOG_WARN, "http_error", fmt, ap);
}

static struct MHD_Daemon *start_mhd(struct gate_server *s,
				    const struct sockaddr_storage *ss,
				    unsigned limit)
{
	const struct gconf *c = s->conf;
	/* No thread of its own: the worker's loop runs it (upstream.c). */
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE;

	if (ss->ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	return MHD_start_daemon(
		flags, 0, NULL, NULL, handle, s,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)ss,
		MHD_OPTION_CONNECTION_LIMIT, limit,
		MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)((c->idle_timeout_ms + 999) / 1000),
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
		/* SO_REUSEPORT: each worker's daemon listens on the port, and
		 * the kernel spreads the connections over them. */
		MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
		MHD_OPTION_END);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/* One daemon and one worker per thread; the first daemon binds the port
 * (the kernel's pick for port 0), the others join it. */
static int start_workers(struct gate_server *s, struct sockaddr_storage *ss,
			 char *err, size_t errlen)
{
	unsigned max = (unsigned)s->conf->max_connections;
	unsigned n = (unsigned)s->n_workers;

	s->workers = calloc(n, sizeof(*s->workers));
	s->daemons = calloc(n, sizeof(*s->daemons));
	if (!s->workers || !s->daemons) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		const union MHD_DaemonInfo *info;
		char text[300];

		s->daemons[i] = start_mhd(s, ss, max / n + (i < max % n));
		if (!s->daemons[i]) {
			snprintf(err, errlen, "listen: cannot listen on %s",
				 conf_addr_format(&s->conf->listen, text,
						  sizeof(text)));
			return -1;
		}
		info = MHD_get_daemon_info(s->daemons[i],
					   MHD_DAEMON_INFO_BIND_PORT);
		if (info && !i) {
			s->port = info->port;
			set_port(ss, info->port);
		}
		s->workers[i] = worker_start(s, (int)i, s->daemons[i], err,
					     errlen);
		if (!s->workers[i])
			return -1;
	}
	return 0;
}

struct gate_server *server_start(const struct gconf *c, struct gate_state *st,
				 char *err, size_t errlen)
{
	struct gate_server *s = calloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	struct conf_addr bound = c->listen;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads = c->threads ? (unsigned)c->threads
			   : cores > 0 ? (unsigned)cores : 1;
	char text[300];

	memset(&ss, 0, sizeof(ss));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->conf = c;
	s->state = st;
	s->n_workers = threads;
	snprintf(s->via, sizeof(s->via), "1.1 discovery-gate");
	if (conf_addr_resolve(&c->listen, "listen", &ss, err, errlen) ||
	    start_workers(s, &ss, err, errlen)) {
		server_stop(s);
		return NULL;
	}
	bound.port = s->port;
	log_info("listening", "listener=http addr=%s threads=%u",
		 conf_addr_format(&bound, text, sizeof(text)), threads);
	return s;
}

struct worker *server_pick_worker(struct gate_server *s)
{
	struct worker *w = worker_current();
	unsigned i;

	if (w)
		return w; /* the thread that runs the client runs its transfer */
	i = atomic_fetch_add_explicit(&s->next_worker, 1, memory_order_relaxed);
	return s->workers[i % s->n_workers];
}

int server_drain(struct gate_server *s, long long timeout_ms)
{
	struct timespec step = { 0, 20 * 1000 * 1000 };
	int left;

	for (size_t i = 0; i < s->n_workers; i++)
		worker_drain(s->workers[i]);
	/* A daemon's own wait for its clients, not a test's sleep. */
	for (long long waited = 0;
	     (left = atomic_load(&s->in_flight)) > 0 && waited < timeout_ms;
	     waited += 20)
		nanosleep(&step, NULL);
	return left;
}

void server_stop(struct gate_server *s)
{
	if (!s)
		return;
	/* Workers first: they fail what is left and wake its clients, so
	 * MHD stops with no connection suspended on us; their threads are
	 * gone, so this one may stop the daemons. */
	for (size_t i = 0; s->workers && i < s->n_workers; i++)
		worker_stop(s->workers[i]);
	for (size_t i = 0; s->daemons && i < s->n_workers; i++)
		if (s->daemons[i])
			MHD_stop_daemon(s->daemons[i]);
	for (size_t i = 0; s->workers && i < s->n_workers; i++)
		worker_free(s->workers[i]);
	free(s->workers);
	free(s->daemons);
	free(s);
}
