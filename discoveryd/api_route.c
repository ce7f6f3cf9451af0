/*
 * api_route: the HTTP API's routes, body handling and validation
 * (docs/api.md), the dashboard page and /metrics.
 *
 * JSON bodies go through proto_parse_json, the same strict parse as agent
 * frames, and every field is validated here, so the hub only ever sees
 * well-formed requests. Unknown fields are errors: a typo in a script
 * should fail loudly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_int.h"
#include "conf.h"
#include "endpoints.h"
#include "epboard.h"
#include "hub.h"
#include "log.h"
#include "proto.h"

#define KEYS_MAX    1000 /* keys in one invalidation */
#define KEY_LEN_MAX 1024 /* bytes in one key */
#define PREFIX      "/api/discovery"
#define AFTER_RULE  "'after' must be a seq (plain decimal digits)"
#define READS       "GET, HEAD" /* Allow: for the read routes */

/* ---- the dashboard ------------------------------------------------------- */

/* discoveryd/web/dashboard.html, linked in by the Makefile (ld -b binary). */
extern const char _binary_dashboard_html_start[];
extern const char _binary_dashboard_html_end[];

static enum MHD_Result do_dashboard(struct MHD_Connection *c)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		(size_t)(_binary_dashboard_html_end -
			 _binary_dashboard_html_start),
		(void *)_binary_dashboard_html_start, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/html; charset=utf-8");
	/* The page talks only to this origin; nothing may frame it. */
	MHD_add_response_header(
		r, "Content-Security-Policy",
		"default-src 'self'; script-src 'unsafe-inline'; "
		"style-src 'unsafe-inline'; frame-ancestors 'none'");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- /metrics ------------------------------------------------------------ */

/* GET /metrics: the hub's numbers, then the API's own. */
static enum MHD_Result do_metrics(struct api *a, struct MHD_Connection *c)
{
	struct hub_req req = { .op = HUB_METRICS };
	struct metrics_text t;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text;

	store_call(a->store, &req);
	if (req.status != 200) {
		free(req.body);
		return api_send_error(c, 503, "unavailable",
				      "metrics are not available");
	}
	metrics_text_init(&t);
	api_http_metrics(a, &t);
	text = metrics_text_finish(&t);
	if (!text ||
	    !(req.body =
		      realloc(req.body, strlen(req.body) + strlen(text) + 1))) {
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
		*ret = api_send_error(c, 400, "bad_request",
				      "a JSON body is required");
		return NULL;
	}
	/* The same strict parse as agent frames: a body that would make a
	 * frame agents refuse (bad UTF-8, NUL, trailing data) never gets
	 * into the log, where resume would replay it forever. */
	json = proto_parse_json(r->body, r->len, PROTO_DEPTH_MAX, why,
				sizeof(why));
	if (!json) {
		*ret = api_send_error(c, 400, "bad_request", "%s", why);
		return NULL;
	}
	if (!cJSON_IsObject(json)) {
		cJSON_Delete(json);
		*ret = api_send_error(c, 400, "bad_request",
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

	cJSON_ArrayForEach (f, o) {
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
static int take_name(const cJSON *o, const char *field, char *out, size_t size)
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
				  struct request *r)
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
		ret = api_send_error(c, 400, "bad_request",
				     "unknown field '%s'", bad);
		cJSON_Delete(body);
		return ret;
	}
	ttl = body ? cJSON_GetObjectItemCaseSensitive(body, "ttl") : NULL;
	if (ttl && !cJSON_IsNull(ttl) &&
	    (!cJSON_IsString(ttl) ||
	     conf_parse_duration(ttl->valuestring, &req.ttl_ms) != 0 ||
	     req.ttl_ms <= 0 || decl == DECL_NONE)) {
		cJSON_Delete(body);
		return api_send_error(c, 400, "bad_request",
				      "'ttl' must be a positive duration like "
				      "30s");
	}
	cJSON_Delete(body);
	snprintf(req.service, sizeof(req.service), "%s", name);
	return api_call_write(a, c, r, &req);
}

static enum MHD_Result do_invalidate(struct api *a, struct MHD_Connection *c,
				     struct request *r)
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
		ret = api_send_error(c, 400, "bad_request",
				     "unknown field '%s'", bad);
		goto out;
	}
	if (take_name(body, "service", req.service, sizeof(req.service)) != 0) {
		ret = api_send_error(c, 400, "bad_request",
				     "'service' must match "
				     "[a-z0-9][a-z0-9_.-]{0,62}");
		goto out;
	}
	keys = cJSON_GetObjectItemCaseSensitive(body, "keys");
	if (!cJSON_IsArray(keys) || !(n = cJSON_GetArraySize(keys)) ||
	    n > KEYS_MAX) {
		ret = api_send_error(c, 400, "bad_request",
				     "'keys' must be an array of 1 to %d "
				     "strings",
				     KEYS_MAX);
		goto out;
	}
	cJSON_ArrayForEach (k, keys) {
		if (!cJSON_IsString(k) || !k->valuestring[0] ||
		    strlen(k->valuestring) > KEY_LEN_MAX) {
			ret = api_send_error(c, 400, "bad_request",
					     "'keys' entries must be strings "
					     "of 1 to %d bytes",
					     KEY_LEN_MAX);
			goto out;
		}
	}
	value = cJSON_CreateObject();
	cJSON_AddItemToObject(value, "keys",
			      cJSON_DetachItemFromObjectCaseSensitive(body,
								      "keys"));
	req.header = cJSON_CreateObject();
	cJSON_AddBoolToObject(req.header, "CacheInvalidate", true);
	req.value = value;
	ret = api_call_write(a, c, r, &req);
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
		      (s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return true;
}

static int take_target(const cJSON *body, struct hub_req *req, const char **why)
{
	static const char *const fields[] = { "service", "instance", NULL };
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "target");
	const cJSON *inst;

	if (!t || cJSON_IsNull(t))
		return 0;
	if (!cJSON_IsObject(t) || unknown_field(t, fields)) {
		*why = "'target' must be an object with 'service' and/or "
		       "'instance'";
		return -1;
	}
	if (take_name(t, "service", req->service, sizeof(req->service)) != 0) {
		*why = "'target.service' must match [a-z0-9][a-z0-9_.-]{0,62}";
		return -1;
	}
	inst = cJSON_GetObjectItemCaseSensitive(t, "instance");
	if (inst && !cJSON_IsNull(inst)) {
		if (!cJSON_IsString(inst) ||
		    !proto_valid_instance(inst->valuestring)) {
			*why = "'target.instance' must be 1 to 128 printable "
			       "characters";
			return -1;
		}
		snprintf(req->instance, sizeof(req->instance), "%s",
			 inst->valuestring);
	}
	return 0;
}

static enum MHD_Result do_broadcast(struct api *a, struct MHD_Connection *c,
				    struct request *r)
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
	/* header and value reach agents with their numbers as written. */
	if (proto_json_exact(body, r->body, r->len) != 0) {
		cJSON_Delete(body);
		return MHD_NO;
	}
	cmd = cJSON_GetObjectItemCaseSensitive(body, "command");
	header = cJSON_GetObjectItemCaseSensitive(body, "header");
	if ((bad = unknown_field(body, fields)))
		ret = api_send_error(c, 400, "bad_request",
				     "unknown field '%s'", bad);
	else if (!cJSON_IsString(cmd) || !valid_command(cmd->valuestring))
		ret = api_send_error(c, 400, "bad_request",
				     "'command' must be 1 to 63 of "
				     "[A-Za-z0-9_.-]");
	else if (header && !cJSON_IsNull(header) && !cJSON_IsObject(header))
		ret = api_send_error(c, 400, "bad_request",
				     "'header' must be an object");
	else if (take_target(body, &req, &why) != 0)
		ret = api_send_error(c, 400, "bad_request", "%s", why);
	else {
		snprintf(req.command, sizeof(req.command), "%s",
			 cmd->valuestring);
		req.header =
			cJSON_DetachItemFromObjectCaseSensitive(body, "header");
		if (!req.header || cJSON_IsNull(req.header)) {
			cJSON_Delete(req.header);
			req.header = cJSON_CreateObject();
		}
		req.value =
			cJSON_DetachItemFromObjectCaseSensitive(body, "value");
		if (!req.value)
			req.value = cJSON_CreateNull();
		ret = api_call_write(a, c, r, &req);
	}
	cJSON_Delete(body);
	return ret;
}

/* A query value (kind MHD_GET_ARGUMENT_KIND) or header as a plain decimal
 * uint64: 0 when absent (out untouched) or valid, -1 otherwise. */
static int value_u64(struct MHD_Connection *c, enum MHD_ValueKind kind,
		     const char *key, uint64_t *out)
{
	const char *v = MHD_lookup_connection_value(c, kind, key);

	if (!v)
		return 0;
	return proto_parse_u64(v, strlen(v), out) ? 0 : -1;
}

static void add_stream_headers(struct MHD_Response *resp)
{
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				"text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
				"no-cache");
	/* nginx: pass it on as it comes, do not buffer a stream. */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
}

/*
 * The live stream (Accept: text/event-stream): retained events after
 * Last-Event-ID (or ?after=), then every new one as it is logged. Past
 * limits.max_streams or max_streams_per_ip, 503.
 */

static enum MHD_Result do_event_stream(struct api *a, struct MHD_Connection *c,
				       struct request *r, bool head)
{
	const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						       "Last-Event-ID");
	struct hub_req req = { .op = HUB_SSE_OPEN };
	struct MHD_Response *resp;
	enum MHD_Result ret;
	const char *full;

	if (last) {
		if (value_u64(c, MHD_HEADER_KIND, "Last-Event-ID",
			      &req.after) != 0)
			return api_send_error(c, 400, "bad_request",
					      "Last-Event-ID must be a seq");
		req.has_after = true;
	} else if (MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
					       "after")) {
		if (value_u64(c, MHD_GET_ARGUMENT_KIND, "after", &req.after) !=
		    0)
			return api_send_error(c, 400, "bad_request",
					      AFTER_RULE);
		req.has_after = true;
	}
	if (!head && (full = api_conns_stream(a->conns, r->conn)))
		return api_send_full(c, full);
	if (head) { /* what a stream would answer, without one */
		resp = MHD_create_response_from_buffer(0, (void *)"",
						       MHD_RESPMEM_PERSISTENT);
		add_stream_headers(resp);
		ret = MHD_queue_response(c, 200, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	r->stream = req.stream = sse_new(c);
	if (!req.stream)
		return MHD_NO;
	store_call(a->store, &req);
	free(req.body);
	if (req.status != 200) {
		sse_free(r->stream);
		r->stream = NULL;
		return api_send_error(c, 503, "stopping",
				      "the daemon is stopping");
	}
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
						 sse_read, r->stream, NULL);
	add_stream_headers(resp);
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

static bool wants_stream(struct MHD_Connection *c)
{
	const char *accept =
		MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					    MHD_HTTP_HEADER_ACCEPT);

	return accept && strstr(accept, "text/event-stream");
}

/* GET /api/discovery/events?after=SEQ&limit=N */
static enum MHD_Result do_events(struct api *a, struct MHD_Connection *c)
{
	struct hub_req req = { .op = HUB_EVENTS };
	uint64_t limit = 0;

	if (value_u64(c, MHD_GET_ARGUMENT_KIND, "after", &req.after) != 0)
		return api_send_error(c, 400, "bad_request", AFTER_RULE);
	if (value_u64(c, MHD_GET_ARGUMENT_KIND, "limit", &limit) != 0 ||
	    limit > 1000000)
		return api_send_error(c, 400, "bad_request",
				      "'limit' must be a plain decimal integer "
				      "up to 1000000");
	req.limit = (size_t)limit;
	return api_call_hub(a, c, &req);
}

/*
 * GET /api/discovery/services/{name}/endpoints?state=ready|any&tag=T: the
 * index goes in X-Discovery-Index too. With ?index=N (and &wait=D), a
 * blocking query (api_block.c): the answer waits until the index passes
 * N; libmicrohttpd calls again when it may go (r->woke).
 */
/* req's answer from the set published last; false when there is none. */
static bool answer_from_board(struct api *a, struct hub_req *req)
{
	struct epset *set = epboard_get(hub_epboard(a->hub), req->service);
	struct endpoints_filter f = { .any = req->any, .tag = req->tag };
	cJSON *list;

	if (!set)
		return false;
	if ((list = cJSON_CreateArray()))
		endpoints_list(list, set, &f);
	req->index = set->index;
	epset_put(set);
	hub_answer(req, list ? 200 : 500,
		   list ? endpoints_answer(req->service, req->index, list) :
			  NULL);
	return true;
}

static enum MHD_Result do_endpoints(struct api *a, struct MHD_Connection *c,
				    const char *name, struct request *r)
{
	struct hub_req req = { .op = HUB_ENDPOINTS };
	const char *state =
		MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
	const char *tag =
		MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "tag");
	enum MHD_Result ret = MHD_NO;
	char index[24];
	uint64_t after;
	int64_t wait_ms;
	const char *full;

	if (state && strcmp(state, "ready") != 0 && strcmp(state, "any") != 0)
		return api_send_error(c, 400, "bad_request",
				      "'state' must be ready or any");
	if (tag && !proto_valid_name(tag))
		return api_send_error(c, 400, "bad_request",
				      "'tag' must match "
				      "[a-z0-9][a-z0-9_.-]{0,62}");
	switch (r->woke ? 0 : api_block_parse(c, &after, &wait_ms, &ret)) {
	case -1: return ret;
	case 1:
		if ((full = api_conns_block(a->conns, r->conn)))
			return api_send_full(c, full);
		if (api_block_begin(a->blocks, c, r, name, after, wait_ms))
			return MHD_YES;
		api_conns_unblock(a->conns, r->conn);
		break;
	default: /* a plain query, or a blocking one woken */ break;
	}
	snprintf(req.service, sizeof(req.service), "%s", name);
	snprintf(req.tag, sizeof(req.tag), "%s", tag ? tag : "");
	req.any = state && strcmp(state, "any") == 0;
	/* Woken: the set that woke it is published; answer from it here,
	 * without a hop to the hub (a thousand woken callers would queue
	 * there one by one). */
	if (!r->woke || !answer_from_board(a, &req))
		store_call(a->store, &req);
	if (req.status != 200)
		return api_send_json(c, req.status, req.body);
	snprintf(index, sizeof(index), "%llu", (unsigned long long)req.index);
	return api_send_json_with(c, 200, req.body, "X-Discovery-Index", index);
}

/* /api/discovery/services/{name}[/{action}] */
static enum MHD_Result route_service(struct api *a, struct MHD_Connection *c,
				     const char *rest, const char *method,
				     struct request *r)
{
	char name[PROTO_NAME_MAX + 1];
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
	const char *action = slash ? slash + 1 : "";

	if (n == 0 || n > PROTO_NAME_MAX)
		return api_send_error(c, n ? 400 : 404,
				      n ? "bad_request" : "not_found",
				      n ? "service names are at most 63 "
					  "characters" :
					  "no such route");
	memcpy(name, rest, n);
	name[n] = '\0';
	if (!proto_valid_name(name))
		return api_send_error(c, 400, "bad_request",
				      "service names match "
				      "[a-z0-9][a-z0-9_.-]{0,62}");
	if (!*action) {
		struct hub_req req = { .op = HUB_SERVICE };

		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			return api_send_405(c, "GET, HEAD");
		snprintf(req.service, sizeof(req.service), "%s", name);
		return api_call_hub(a, c, &req);
	}
	if (strcmp(action, "ready") == 0 || strcmp(action, "notready") == 0) {
		if (strcmp(method, "POST") != 0)
			return api_send_405(c, "POST");
		return do_declare(a, c, name,
				  action[0] == 'r' ? DECL_READY : DECL_NOTREADY,
				  r);
	}
	if (strcmp(action, "endpoints") == 0) {
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			return api_send_405(c, "GET, HEAD");
		return do_endpoints(a, c, name, r);
	}
	if (strcmp(action, "declaration") == 0) {
		if (strcmp(method, "DELETE") != 0)
			return api_send_405(c, "DELETE");
		return do_declare(a, c, name, DECL_NONE, r);
	}
	return api_send_error(c, 404, "not_found", "no such route");
}

/* /api/discovery/nodes/{node}/drain: the node's name may hold '/'. */
static enum MHD_Result route_node(struct api *a, struct MHD_Connection *c,
				  const char *rest, const char *method,
				  struct request *r)
{
	struct hub_req req = { .op = HUB_DRAIN };
	size_t n = strlen(rest);

	if (n <= 6 || strcmp(rest + n - 6, "/drain") != 0)
		return api_send_error(c, 404, "not_found", "no such route");
	n -= 6;
	if (n > PROTO_INSTANCE_MAX)
		return api_send_error(c, 400, "bad_request",
				      "node names are 1 to 128 printable "
				      "characters");
	memcpy(req.instance, rest, n);
	req.instance[n] = '\0';
	if (!proto_valid_instance(req.instance))
		return api_send_error(c, 400, "bad_request",
				      "node names are 1 to 128 printable "
				      "characters");
	if (strcmp(method, "POST") != 0)
		return api_send_405(c, "POST");
	return api_call_write(a, c, r, &req);
}

/*
 * A write's Idempotency-Key (the IETF draft's header): 1 to 255 visible
 * ASCII characters, bare or as the draft's quoted string. Stored scoped by
 * who sent it, so one caller's key never answers another. 0, or -1 with
 * a 400 queued in *ret.
 */
static int take_idem_key(struct MHD_Connection *c, const char *target,
			 const char *method, const char *principal,
			 struct request *r, enum MHD_Result *ret)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    "Idempotency-Key");
	char key[IDEM_KEY_MAX + 3];
	size_t n;

	r->idem_key[0] = '\0';
	if (!v)
		return 0;
	n = strlen(v);
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	if (n > IDEM_KEY_MAX)
		n = IDEM_KEY_MAX + 1; /* refused below */
	memcpy(key, v, n);
	key[n] = '\0';
	if (!idem_valid_key(key) || strchr(key, '"')) {
		*ret = api_send_error(c, 400, "bad_request",
				      "'Idempotency-Key' "
				      "must be 1 to %d visible ASCII "
				      "characters",
				      IDEM_KEY_MAX);
		return -1;
	}
	snprintf(r->idem_key, sizeof(r->idem_key), "%s\n%s", principal, key);
	idem_fingerprint(method, target, r->body, r->len, r->idem_fp);
	return 0;
}

enum MHD_Result api_route(struct api *a, struct MHD_Connection *c,
			  const char *url, const char *method,
			  struct request *r)
{
	const char *target = url;
	char principal[TOKEN_SUB_MAX + 8] = "";
	enum MHD_Result ret;
	/* HEAD answers as GET does; libmicrohttpd leaves the body out. */
	bool head = strcmp(method, "HEAD") == 0;
	bool get = head || strcmp(method, "GET") == 0;
	bool post = strcmp(method, "POST") == 0;
	struct hub_req req = { 0 };
	struct api_refusal why;

	if (api_origin_refuse(a->origin, c, url, method, &why))
		return api_send_error(c, why.status, why.error, "%s",
				      why.message);
	if (strcmp(url, "/healthz") == 0) {
		r->route = R_HEALTHZ;
		/* Draining: a balancer's health check takes the node out. */
		if (!get)
			return api_send_405(c, READS);
		return hub_drain_state(a->hub) != HUB_SERVING ?
			       api_send_json(c, 503,
					     strdup("{\"status\":"
						    "\"draining\"}")) :
			       api_send_json(c, 200,
					     strdup("{\"status\":\"ok\"}"));
	}
	if (strcmp(url, "/") == 0) {
		r->route = R_DASHBOARD;
		return get ? do_dashboard(c) : api_send_405(c, READS);
	}
	if (strcmp(url, "/metrics") == 0) {
		struct auth_result ar;

		r->route = R_METRICS;
		if (!get)
			return api_send_405(c, READS);
		auth_check(a->auth,
			   MHD_lookup_connection_value(
				   c, MHD_HEADER_KIND,
				   MHD_HTTP_HEADER_AUTHORIZATION),
			   false, AUTH_READ, &ar);
		return ar.status ? api_send_denied(c, &ar) : do_metrics(a, c);
	}
	if (strncmp(url, PREFIX "/", sizeof(PREFIX)) != 0 &&
	    strncasecmp(url, PREFIX "/", sizeof(PREFIX)) != 0)
		return api_send_error(c, 404, "not_found", "no such route");
	url += sizeof(PREFIX);
	if (auth_enabled(a->auth)) {
		struct auth_result ar;
		const char *header = MHD_lookup_connection_value(
			c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
		/* cacheready changes state even as a GET (NetCoreStack's
		 * spelling): it needs the right to write. */
		bool reads = get && strcasecmp(url, "cacheready") != 0;
		/* A browser's EventSource cannot set headers: reads may carry
		 * the token as ?token= instead (as agent links may). A URL
		 * ends up in logs, history and Referer: never for a write. */
		const char *query =
			!header && get ?
				MHD_lookup_connection_value(
					c, MHD_GET_ARGUMENT_KIND, "token") :
				NULL;

		if (query && !reads) {
			ar = (struct auth_result){ .status = 401,
						   .error = "unauthorized" };
			snprintf(ar.message, sizeof(ar.message),
				 "a token in the "
				 "URL never authorizes a change: send "
				 "Authorization: Bearer TOKEN");
			return api_send_denied(c, &ar);
		}
		auth_check(a->auth, header ? header : query, query != NULL,
			   reads ? AUTH_READ : AUTH_WRITE, &ar);
		if (ar.status)
			return api_send_denied(c, &ar);
		snprintf(principal, sizeof(principal), "sub:%s", ar.claims.sub);
	}
	/* Reads never change anything: a key on one means nothing. */
	if ((!get || strcasecmp(url, "cacheready") == 0) &&
	    take_idem_key(c, target, method, principal, r, &ret) != 0)
		return ret;

	/* NetCoreStack's route was /api/Discovery/CacheReady: any case. A
	 * HEAD must change nothing, so this GET has none. */
	if (strcasecmp(url, "cacheready") == 0) {
		r->route = R_CACHEREADY;
		if (head || (!get && !post))
			return api_send_405(c, "GET, POST");
		req.op = HUB_CACHEREADY;
		return api_call_write(a, c, r, &req);
	}
	if (strcmp(url, "services") == 0) {
		r->route = R_SERVICES;
		if (!get)
			return api_send_405(c, READS);
		req.op = HUB_SERVICES;
		return api_call_hub(a, c, &req);
	}
	if (strncmp(url, "services/", 9) == 0) {
		r->route = strchr(url + 9, '/') ? R_DECLARE : R_SERVICE;
		return route_service(a, c, url + 9, method, r);
	}
	if (strcmp(url, "info") == 0) {
		r->route = R_INFO;
		if (!get)
			return api_send_405(c, READS);
		req.op = HUB_INFO;
		return api_call_hub(a, c, &req);
	}
	if (strcmp(url, "agents") == 0) {
		r->route = R_AGENTS;
		if (!get)
			return api_send_405(c, READS);
		req.op = HUB_AGENTS;
		return api_call_hub(a, c, &req);
	}
	if (strcmp(url, "events") == 0) {
		r->route = R_EVENTS;
		if (!get)
			return api_send_405(c, READS);
		return wants_stream(c) ? do_event_stream(a, c, r, head) :
					 do_events(a, c);
	}
	if (strcmp(url, "invalidate") == 0) {
		r->route = R_INVALIDATE;
		return post ? do_invalidate(a, c, r) : api_send_405(c, "POST");
	}
	if (strcmp(url, "broadcast") == 0) {
		r->route = R_BROADCAST;
		return post ? do_broadcast(a, c, r) : api_send_405(c, "POST");
	}
	if (strncmp(url, "nodes/", 6) == 0) {
		r->route = R_DRAIN;
		return route_node(a, c, url + 6, method, r);
	}
	if (strncmp(url, "webhooks", 8) == 0 && (!url[8] || url[8] == '/')) {
		r->route = R_WEBHOOKS;
		return api_route_webhooks(a, c, url + 8, method, r);
	}
	if (strcmp(url, "sd/prometheus") == 0) {
		r->route = R_SD;
		return api_route_sd(a, c, method);
	}
	return api_send_error(c, 404, "not_found", "no such route");
}
