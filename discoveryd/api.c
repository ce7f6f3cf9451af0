/*
 * api: routes, body handling and validation of the HTTP API (see api.h).
 *
 * A request body is collected up to limits.max_message (413 past it, said
 * as soon as Content-Length shows it, else when the cap is crossed). JSON
 * bodies are checked for nesting depth before cJSON parses them, and every
 * field is validated here, so the hub only ever sees well-formed requests.
 * Unknown fields are errors: a typo in a script should fail loudly.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "api.h"
#include "auth.h"
#include "conf.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"

#define KEYS_MAX     1000       /* keys in one invalidation */
#define KEY_LEN_MAX  1024       /* bytes in one key */
#define PREFIX       "/api/discovery"

/* Routes, for discovery_http_requests_total{route,code}. */
enum route {
	R_OTHER = 0, R_HEALTHZ, R_METRICS, R_CACHEREADY, R_SERVICES, R_SERVICE,
	R_DECLARE, R_AGENTS, R_EVENTS, R_INVALIDATE, R_BROADCAST, R_DASHBOARD,
	R_INFO, R_COUNT
};

static const char *const route_names[R_COUNT] = {
	"other", "/healthz", "/metrics", "/api/discovery/cacheready",
	"/api/discovery/services", "/api/discovery/services/{name}",
	"/api/discovery/services/{name}/{declaration}", "/api/discovery/agents",
	"/api/discovery/events", "/api/discovery/invalidate",
	"/api/discovery/broadcast", "/", "/api/discovery/info",
};

static const unsigned codes[] = {
	200, 202, 204, 400, 401, 403, 404, 405, 413, 431, 500, 503, 0 /* other */
};
#define N_CODES (sizeof(codes) / sizeof(codes[0]))

struct api {
	struct MHD_Daemon *mhd;
	atomic_uint_least64_t requests[R_COUNT][N_CODES];
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

/* ---- answers ------------------------------------------------------------ */

static enum MHD_Result send_json(struct MHD_Connection *c, int status,
				 char *body)
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

static enum MHD_Result send_error(struct MHD_Connection *c, int status,
				  const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum MHD_Result send_error(struct MHD_Connection *c, int status,
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
	return send_json(c, status, body);
}

static enum MHD_Result send_405(struct MHD_Connection *c, const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char body[160];

	snprintf(body, sizeof(body),
		 "{\"error\":\"method_not_allowed\",\"message\":\"use %s\"}",
		 allow);
	r = MHD_create_response_from_buffer(strlen(body), body,
					    MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
	MHD_destroy_response(r);
	return ret;
}

/* 401 (with WWW-Authenticate, RFC 6750) or 403. */
static enum MHD_Result send_denied(struct MHD_Connection *c,
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

static enum MHD_Result call_hub(struct api *a, struct MHD_Connection *c,
				struct hub_req *req)
{
	hub_call(a->hub, req);
	return send_json(c, req->status, req->body);
}

/* ---- the dashboard ---------------------------------------------------------- */

/* discoveryd/web/dashboard.html, linked in by the Makefile (ld -b binary). */
extern const char _binary_dashboard_html_start[];
extern const char _binary_dashboard_html_end[];

static enum MHD_Result do_dashboard(struct MHD_Connection *c)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		(size_t)(_binary_dashboard_html_end - _binary_dashboard_html_start),
		(void *)_binary_dashboard_html_start, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/html; charset=utf-8");
	/* The page talks only to this origin; nothing may frame it. */
	MHD_add_response_header(r, "Content-Security-Policy",
				"default-src 'self'; script-src 'unsafe-inline'; "
				"style-src 'unsafe-inline'; frame-ancestors 'none'");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- /metrics -------------------------------------------------------------- */

static void http_metrics(struct api *a, struct metrics_text *t)
{
	char label[160];

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
			metrics_sample(t, "discovery_http_requests_total", label,
				       (double)n);
		}
}

/* GET /metrics: the hub's numbers, then the API's own. */
static enum MHD_Result do_metrics(struct api *a, struct MHD_Connection *c)
{
	struct hub_req req = { .op = HUB_METRICS };
	struct metrics_text t;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text;

	hub_call(a->hub, &req);
	if (req.status != 200) {
		free(req.body);
		return send_error(c, 503, "unavailable", "metrics are not available");
	}
	metrics_text_init(&t);
	http_metrics(a, &t);
	text = metrics_text_finish(&t);
	if (!text || !(req.body = realloc(req.body, strlen(req.body) +
					  strlen(text) + 1))) {
		free(text);
		return MHD_NO;
	}
	strcat(req.body, text);
	free(text);
	resp = MHD_create_response_from_buffer(strlen(req.body), req.body,
					       MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/plain; version=0.0.4; charset=utf-8");
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- body parsing ------------------------------------------------------- */

/*
 * Parse the body as a JSON object. An empty body is NULL with *ok true when
 * allow_empty. Otherwise on failure *ok is false and an answer was queued.
 */
static cJSON *parse_body(struct MHD_Connection *c, const struct request *r,
			 bool allow_empty, bool *ok, enum MHD_Result *ret)
{
	char why[128];
	cJSON *json;
	size_t i = 0;

	*ok = false;
	/* Not strchr: it would count the terminating NUL as whitespace. */
	while (i < r->len && (r->body[i] == ' ' || r->body[i] == '\t' ||
			      r->body[i] == '\r' || r->body[i] == '\n'))
		i++;
	if (i == r->len) {
		if (allow_empty) {
			*ok = true;
			return NULL;
		}
		*ret = send_error(c, 400, "bad_request", "a JSON body is required");
		return NULL;
	}
	/* The same strict parse as agent frames: a body that would make a
	 * frame agents refuse (bad UTF-8, NUL, trailing data) never gets
	 * into the log, where resume would replay it forever. */
	json = proto_parse_json(r->body, r->len, PROTO_DEPTH_MAX, why,
				sizeof(why));
	if (!json) {
		*ret = send_error(c, 400, "bad_request", "%s", why);
		return NULL;
	}
	if (!cJSON_IsObject(json)) {
		cJSON_Delete(json);
		*ret = send_error(c, 400, "bad_request",
				  "the body must be a JSON object");
		return NULL;
	}
	*ok = true;
	return json;
}

/* The first field of o not in allowed (NULL-ended), or NULL. */
static const char *unknown_field(const cJSON *o, const char *const *allowed)
{
	const cJSON *f;

	cJSON_ArrayForEach(f, o) {
		size_t i;

		for (i = 0; allowed[i]; i++)
			if (strcmp(f->string, allowed[i]) == 0)
				break;
		if (!allowed[i])
			return f->string;
	}
	return NULL;
}

/* An optional service name field: 0 ok (copied into out, "" if absent). */
static int take_name(const cJSON *o, const char *field, char *out,
		     size_t size)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);

	out[0] = '\0';
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v) || !proto_valid_name(v->valuestring))
		return -1;
	snprintf(out, size, "%s", v->valuestring);
	return 0;
}

/* ---- routes ------------------------------------------------------------- */

static enum MHD_Result do_declare(struct api *a, struct MHD_Connection *c,
				  const char *name, enum declaration decl,
				  const struct request *r)
{
	static const char *const fields[] = { "ttl", NULL };
	struct hub_req req = { .op = HUB_DECLARE, .decl = decl };
	enum MHD_Result ret = MHD_NO;
	const char *bad;
	cJSON *body, *ttl;
	bool ok;

	body = parse_body(c, r, true, &ok, &ret);
	if (!ok)
		return ret;
	if (body && (bad = unknown_field(body, fields))) {
		ret = send_error(c, 400, "bad_request", "unknown field '%s'", bad);
		cJSON_Delete(body);
		return ret;
	}
	ttl = body ? cJSON_GetObjectItemCaseSensitive(body, "ttl") : NULL;
	if (ttl && !cJSON_IsNull(ttl) &&
	    (!cJSON_IsString(ttl) ||
	     conf_parse_duration(ttl->valuestring, &req.ttl_ms) != 0 ||
	     req.ttl_ms <= 0 || decl == DECL_NONE)) {
		cJSON_Delete(body);
		return send_error(c, 400, "bad_request",
				  "'ttl' must be a positive duration like 30s");
	}
	cJSON_Delete(body);
	snprintf(req.service, sizeof(req.service), "%s", name);
	return call_hub(a, c, &req);
}

static enum MHD_Result do_invalidate(struct api *a, struct MHD_Connection *c,
				     const struct request *r)
{
	static const char *const fields[] = { "keys", "service", NULL };
	struct hub_req req = { .op = HUB_INVALIDATE };
	enum MHD_Result ret = MHD_NO;
	const cJSON *keys, *k;
	const char *bad;
	cJSON *body, *value;
	int n = 0;
	bool ok;

	body = parse_body(c, r, false, &ok, &ret);
	if (!ok)
		return ret;
	if ((bad = unknown_field(body, fields))) {
		ret = send_error(c, 400, "bad_request", "unknown field '%s'", bad);
		goto out;
	}
	if (take_name(body, "service", req.service, sizeof(req.service)) != 0) {
		ret = send_error(c, 400, "bad_request",
				 "'service' must match [a-z0-9][a-z0-9_.-]{0,62}");
		goto out;
	}
	keys = cJSON_GetObjectItemCaseSensitive(body, "keys");
	if (!cJSON_IsArray(keys) || !(n = cJSON_GetArraySize(keys)) ||
	    n > KEYS_MAX) {
		ret = send_error(c, 400, "bad_request",
				 "'keys' must be an array of 1 to %d strings", KEYS_MAX);
		goto out;
	}
	cJSON_ArrayForEach(k, keys) {
		if (!cJSON_IsString(k) || !k->valuestring[0] ||
		    strlen(k->valuestring) > KEY_LEN_MAX) {
			ret = send_error(c, 400, "bad_request",
					 "'keys' entries must be strings of 1 to %d bytes",
					 KEY_LEN_MAX);
			goto out;
		}
	}
	value = cJSON_CreateObject();
	cJSON_AddItemToObject(value, "keys",
			      cJSON_DetachItemFromObjectCaseSensitive(body, "keys"));
	req.header = cJSON_CreateObject();
	cJSON_AddBoolToObject(req.header, "CacheInvalidate", true);
	req.value = value;
	ret = call_hub(a, c, &req);
out:
	cJSON_Delete(body);
	return ret;
}

static bool valid_command(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '_' || s[i] == '-' || s[i] == '.' ||
		      (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return true;
}

static int take_target(const cJSON *body, struct hub_req *req,
		       const char **why)
{
	static const char *const fields[] = { "service", "instance", NULL };
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "target");
	const cJSON *inst;

	if (!t || cJSON_IsNull(t))
		return 0;
	if (!cJSON_IsObject(t) || unknown_field(t, fields)) {
		*why = "'target' must be an object with 'service' and/or 'instance'";
		return -1;
	}
	if (take_name(t, "service", req->service, sizeof(req->service)) != 0) {
		*why = "'target.service' must match [a-z0-9][a-z0-9_.-]{0,62}";
		return -1;
	}
	inst = cJSON_GetObjectItemCaseSensitive(t, "instance");
	if (inst && !cJSON_IsNull(inst)) {
		if (!cJSON_IsString(inst) || !proto_valid_instance(inst->valuestring)) {
			*why = "'target.instance' must be 1 to 128 printable characters";
			return -1;
		}
		snprintf(req->instance, sizeof(req->instance), "%s",
			 inst->valuestring);
	}
	return 0;
}

static enum MHD_Result do_broadcast(struct api *a, struct MHD_Connection *c,
				    const struct request *r)
{
	static const char *const fields[] = { "command", "header", "value",
					      "target", NULL };
	struct hub_req req = { .op = HUB_BROADCAST };
	enum MHD_Result ret = MHD_NO;
	const char *bad, *why = NULL;
	const cJSON *cmd, *header;
	cJSON *body;
	bool ok;

	body = parse_body(c, r, false, &ok, &ret);
	if (!ok)
		return ret;
	cmd = cJSON_GetObjectItemCaseSensitive(body, "command");
	header = cJSON_GetObjectItemCaseSensitive(body, "header");
	if ((bad = unknown_field(body, fields)))
		ret = send_error(c, 400, "bad_request", "unknown field '%s'", bad);
	else if (!cJSON_IsString(cmd) || !valid_command(cmd->valuestring))
		ret = send_error(c, 400, "bad_request",
				 "'command' must be 1 to 63 of [A-Za-z0-9_.-]");
	else if (header && !cJSON_IsNull(header) && !cJSON_IsObject(header))
		ret = send_error(c, 400, "bad_request", "'header' must be an object");
	else if (take_target(body, &req, &why) != 0)
		ret = send_error(c, 400, "bad_request", "%s", why);
	else {
		snprintf(req.command, sizeof(req.command), "%s", cmd->valuestring);
		req.header = cJSON_DetachItemFromObjectCaseSensitive(body, "header");
		if (!req.header || cJSON_IsNull(req.header)) {
			cJSON_Delete(req.header);
			req.header = cJSON_CreateObject();
		}
		req.value = cJSON_DetachItemFromObjectCaseSensitive(body, "value");
		if (!req.value)
			req.value = cJSON_CreateNull();
		ret = call_hub(a, c, &req);
	}
	cJSON_Delete(body);
	return ret;
}

/* Parse a whole query value as an unsigned integer. */
static int query_u64(struct MHD_Connection *c, const char *key, uint64_t *out)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
	char *end;

	if (!v)
		return 0;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return *v && !*end && *v != '-' && errno == 0 ? 0 : -1;
}

/*
 * The live stream (Accept: text/event-stream): retained events after
 * Last-Event-ID (or ?after=), then every new one as it is logged.
 */
static enum MHD_Result do_event_stream(struct api *a, struct MHD_Connection *c,
				       struct request *r)
{
	const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						       "Last-Event-ID");
	struct hub_req req = { .op = HUB_SSE_OPEN };
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *end;

	if (last) {
		errno = 0;
		req.after = strtoull(last, &end, 10);
		req.has_after = *last && !*end && *last != '-' && errno == 0;
		if (!req.has_after)
			return send_error(c, 400, "bad_request",
					  "Last-Event-ID must be a seq");
	} else if (MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after")) {
		if (query_u64(c, "after", &req.after) != 0)
			return send_error(c, 400, "bad_request",
					  "'after' must be a seq (an unsigned integer)");
		req.has_after = true;
	}
	r->stream = req.stream = sse_new(c);
	if (!req.stream)
		return MHD_NO;
	hub_call(a->hub, &req);
	free(req.body);
	if (req.status != 200) {
		sse_free(r->stream);
		r->stream = NULL;
		return send_error(c, 503, "stopping", "the daemon is stopping");
	}
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
						 sse_read, r->stream, NULL);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	/* nginx: pass it on as it comes, do not buffer a stream. */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

static bool wants_stream(struct MHD_Connection *c)
{
	const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							 MHD_HTTP_HEADER_ACCEPT);

	return accept && strstr(accept, "text/event-stream");
}

/* GET /api/discovery/events?after=SEQ&limit=N */
static enum MHD_Result do_events(struct api *a, struct MHD_Connection *c)
{
	struct hub_req req = { .op = HUB_EVENTS };
	uint64_t limit = 0;

	if (query_u64(c, "after", &req.after) != 0)
		return send_error(c, 400, "bad_request",
				  "'after' must be a seq (an unsigned integer)");
	if (query_u64(c, "limit", &limit) != 0 || limit > 1000000)
		return send_error(c, 400, "bad_request",
				  "'limit' must be an integer up to 1000000");
	req.limit = (size_t)limit;
	return call_hub(a, c, &req);
}

/* /api/discovery/services/{name}[/{action}] */
static enum MHD_Result route_service(struct api *a, struct MHD_Connection *c,
				     const char *rest, const char *method,
				     const struct request *r)
{
	char name[PROTO_NAME_MAX + 1];
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
	const char *action = slash ? slash + 1 : "";

	if (n == 0 || n > PROTO_NAME_MAX)
		return send_error(c, n ? 400 : 404, n ? "bad_request" : "not_found",
				  n ? "service names are at most 63 characters"
				    : "no such route");
	memcpy(name, rest, n);
	name[n] = '\0';
	if (!proto_valid_name(name))
		return send_error(c, 400, "bad_request",
				  "service names match [a-z0-9][a-z0-9_.-]{0,62}");
	if (!*action) {
		struct hub_req req = { .op = HUB_SERVICE };

		if (strcmp(method, "GET") != 0)
			return send_405(c, "GET");
		snprintf(req.service, sizeof(req.service), "%s", name);
		return call_hub(a, c, &req);
	}
	if (strcmp(action, "ready") == 0 || strcmp(action, "notready") == 0) {
		if (strcmp(method, "POST") != 0)
			return send_405(c, "POST");
		return do_declare(a, c, name, action[0] == 'r' ? DECL_READY
							       : DECL_NOTREADY, r);
	}
	if (strcmp(action, "declaration") == 0) {
		if (strcmp(method, "DELETE") != 0)
			return send_405(c, "DELETE");
		return do_declare(a, c, name, DECL_NONE, r);
	}
	return send_error(c, 404, "not_found", "no such route");
}

static enum MHD_Result route(struct api *a, struct MHD_Connection *c,
			     const char *url, const char *method,
			     struct request *r)
{
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	struct hub_req req = { 0 };

	if (strcmp(url, "/healthz") == 0) {
		r->route = R_HEALTHZ;
		return get || strcmp(method, "HEAD") == 0 ?
		       send_json(c, 200, strdup("{\"status\":\"ok\"}")) :
		       send_405(c, "GET, HEAD");
	}
	if (strcmp(url, "/") == 0) {
		r->route = R_DASHBOARD;
		return get || strcmp(method, "HEAD") == 0 ? do_dashboard(c)
							  : send_405(c, "GET, HEAD");
	}
	if (strcmp(url, "/metrics") == 0) {
		struct auth_result ar;

		r->route = R_METRICS;
		if (!get)
			return send_405(c, "GET");
		auth_check(a->auth, MHD_lookup_connection_value(c,
				MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
			   false, AUTH_READ, &ar);
		return ar.status ? send_denied(c, &ar) : do_metrics(a, c);
	}
	if (strncmp(url, PREFIX "/", sizeof(PREFIX)) != 0 &&
	    strncasecmp(url, PREFIX "/", sizeof(PREFIX)) != 0)
		return send_error(c, 404, "not_found", "no such route");
	url += sizeof(PREFIX);
	if (auth_enabled(a->auth)) {
		struct auth_result ar;
		const char *header = MHD_lookup_connection_value(c,
			MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
		/* A browser's EventSource cannot set headers: reads may carry
		 * the token as ?token= instead (as agent links may). */
		const char *query = !header && get ? MHD_lookup_connection_value(
			c, MHD_GET_ARGUMENT_KIND, "token") : NULL;

		/* cacheready changes state even as a GET (NetCoreStack's
		 * spelling): it needs the right to write. */
		bool reads = (get || strcmp(method, "HEAD") == 0) &&
			     strcasecmp(url, "cacheready") != 0;

		auth_check(a->auth, header ? header : query, query != NULL,
			   reads ? AUTH_READ : AUTH_WRITE, &ar);
		if (ar.status)
			return send_denied(c, &ar);
	}

	/* NetCoreStack's route was /api/Discovery/CacheReady: any case. */
	if (strcasecmp(url, "cacheready") == 0) {
		r->route = R_CACHEREADY;
		if (!get && !post)
			return send_405(c, "GET, POST");
		req.op = HUB_CACHEREADY;
		return call_hub(a, c, &req);
	}
	if (strcmp(url, "services") == 0) {
		r->route = R_SERVICES;
		if (!get)
			return send_405(c, "GET");
		req.op = HUB_SERVICES;
		return call_hub(a, c, &req);
	}
	if (strncmp(url, "services/", 9) == 0) {
		r->route = strchr(url + 9, '/') ? R_DECLARE : R_SERVICE;
		return route_service(a, c, url + 9, method, r);
	}
	if (strcmp(url, "info") == 0) {
		r->route = R_INFO;
		if (!get)
			return send_405(c, "GET");
		req.op = HUB_INFO;
		return call_hub(a, c, &req);
	}
	if (strcmp(url, "agents") == 0) {
		r->route = R_AGENTS;
		if (!get)
			return send_405(c, "GET");
		req.op = HUB_AGENTS;
		return call_hub(a, c, &req);
	}
	if (strcmp(url, "events") == 0) {
		r->route = R_EVENTS;
		if (!get)
			return send_405(c, "GET");
		return wants_stream(c) ? do_event_stream(a, c, r) : do_events(a, c);
	}
	if (strcmp(url, "invalidate") == 0) {
		r->route = R_INVALIDATE;
		return post ? do_invalidate(a, c, r) : send_405(c, "POST");
	}
	if (strcmp(url, "broadcast") == 0) {
		r->route = R_BROADCAST;
		return post ? do_broadcast(a, c, r) : send_405(c, "POST");
	}
	return send_error(c, 404, "not_found", "no such route");
}

/* ---- libmicrohttpd glue ------------------------------------------------- */

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
			       const char *url, const char *method,
			       const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct api *a = cls;
	struct request *r = *con_cls;
	size_t cap = atomic_load(&a->max_body);

	(void)version;
	if (!r) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
			MHD_HTTP_HEADER_CONTENT_LENGTH);

		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*con_cls = r;
		if (cl && strtoull(cl, NULL, 10) > cap)
			return send_error(c, 413, "too_large",
					  "the body is over limits.max_message (%zu bytes)",
					  cap);
		return MHD_YES;
	}
	if (*upload_size) {
		if (!r->too_big && r->len + *upload_size <= cap) {
			char *grown = realloc(r->body, r->len + *upload_size + 1);

			if (!grown)
				return MHD_NO;
			r->body = grown;
			memcpy(r->body + r->len, upload, *upload_size);
			r->len += *upload_size;
			r->body[r->len] = '\0';
		} else {
			r->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->too_big)
		return send_error(c, 413, "too_large",
				  "the body is over limits.max_message (%zu bytes)",
				  cap);
	return route(a, c, url, method, r);
}

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

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct request *r = *con_cls;

	if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		count_request(cls, c, r ? r->route : R_OTHER);
	if (r && r->stream) {
		struct hub_req req = { .op = HUB_SSE_CLOSE, .stream = r->stream };

		hub_call(((struct api *)cls)->hub, &req);
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
	(void)cls;
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

#define OPT(o, v, p) (opts[n++] = (struct MHD_OptionItem){ (o), (intptr_t)(v), (p) })
	if (sa)
		OPT(MHD_OPTION_SOCK_ADDR, 0, (void *)sa);
	else
		OPT(MHD_OPTION_LISTEN_SOCKET, fd, NULL);
	OPT(MHD_OPTION_THREAD_POOL_SIZE, a->threads, NULL);
	OPT(MHD_OPTION_CONNECTION_LIMIT, a->max_http, NULL);
	OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, a->max_http_per_ip, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, 30, NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, 32 * 1024, NULL);
	OPT(MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, a);
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
	return MHD_start_daemon(flags, 0, NULL, NULL, handler, a,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
				MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
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
		      struct auth *auth, char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	struct conf_addr bound = conf->listen_http;
	char addr[300];

	conf_addr_format(&conf->listen_http, addr, sizeof(addr));
	if (!a || conf_addr_resolve(&conf->listen_http, "listen.http", &ss,
				    err, errlen) != 0) {
		free(a);
		return NULL;
	}
	a->hub = hub;
	a->auth = auth;
	a->threads = (unsigned)conf->http_threads;
	a->max_http = (unsigned)conf->max_http;
	a->max_http_per_ip = (unsigned)conf->max_http_per_ip;
	atomic_store(&a->max_body, (size_t)conf->max_message);
	if (take_tls(a, conf) == 0)
		a->mhd = start_mhd(a, (struct sockaddr *)&ss, -1);
	if (!a->mhd) {
		snprintf(err, errlen, "cannot listen for HTTP%s on %s",
			 conf->tls_present ? "S" : "", addr);
		free_pem(&a->cert);
		free_pem(&a->key);
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

		hub_call(a->hub, &req);
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
	MHD_stop_daemon(a->mhd);
	a->mhd = fresh;
	free_pem(&a->old_cert);
	free_pem(&a->old_key);
	if (!fresh)
		log_error("reload", "note=\"the HTTP API stopped listening\"");
}

void api_reload(struct api *a, const struct dconf *conf)
{
	atomic_store(&a->max_body, (size_t)conf->max_message);
	reload_tls(a, conf);
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	if (a->mhd) {
		/* Live streams end first: a suspended connection would hold
		 * MHD_stop_daemon up. */
		struct hub_req req = { .op = HUB_SSE_END_ALL };

		hub_call(a->hub, &req);
		free(req.body);
		MHD_stop_daemon(a->mhd);
	}
	free_pem(&a->cert);
	free_pem(&a->key);
	free(a);
}
