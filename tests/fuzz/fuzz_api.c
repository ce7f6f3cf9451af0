/*
 * fuzz_api: libFuzzer harness for the HTTP API's request handling
 * (discoveryd/api.c and api_route.c): routing, the body cap and its drain,
 * the browser checks (api_origin.c: Host, Origin, Sec-Fetch-Site, Referer),
 * JSON body parsing and the field checks, everything between
 * libmicrohttpd and the hub.
 *
 * api.c has no seam between its checks and libmicrohttpd: the checks queue
 * their answers on a struct MHD_Connection. Until it grows one, this
 * harness #includes api.c and defines its own versions of the calls a
 * request makes on a connection (create, header, queue, destroy a
 * response; look up a header or query argument), which take precedence
 * over libmicrohttpd's, and of store_call. The daemon-level calls (start,
 * quiesce, stop) stay libmicrohttpd's and are never reached. It then plays
 * one request through api.c's real access handler the way libmicrohttpd
 * does: a first call with the headers, one call per upload chunk, a last
 * call, then the completion callback. No socket, thread or hub is
 * involved. A new per-connection MHD call in api.c needs a stand-in here
 * (else the real one gets this harness's fake connection and crashes).
 *
 * An input is a request as on the wire, with \n for line ends:
 *
 *     METHOD TARGET\n
 *     Name: value\n            (any number of header lines)
 *     \n
 *     BODY...
 *
 * TARGET may carry ?query arguments; path and arguments are %-decoded as
 * libmicrohttpd does. With no blank line there is no body.
 *
 * Auth is on, as in production: discoveryd/auth.c with one secret, so
 * every call but /healthz needs "Authorization: Bearer TOKEN". The seeds
 * carry tokens signed with that secret (32 bytes of 'a'): admin, reader
 * and agent ones.
 *
 * Checks, beyond "no crash, no leak, no undefined behaviour":
 *   - every request that is not dropped (MHD_NO) gets exactly one answer,
 *     and every answer is a JSON object; errors have "error" and "message";
 *     405s say Allow;
 *   - a call that reads a body is accepted (2xx) only with none or with
 *     one that is exactly one JSON text (UTF-8, no NUL or control bytes,
 *     nothing after the value): docs/api.md answers malformed JSON with 400;
 *   - 401s say WWW-Authenticate (RFC 6750);
 *   - the hub is reached only with a token whose role may make the call:
 *     admin for anything that changes state (declarations, cacheready,
 *     invalidations, broadcasts), admin or reader for reads. The token is
 *     verified again here, apart from auth.c;
 *   - the hub only ever sees well-formed requests (api.c's promise): valid
 *     service and instance names, a TTL only with a declaration, 1 to 1000
 *     keys of 1 to 1024 bytes, a valid command, a header object;
 *   - an invalidation or broadcast makes an event frame that agents can
 *     decode (proto_decode), since an agent closes its link on one it
 *     cannot, and gets it again when it resumes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../discoveryd/api.c"
#include "../../discoveryd/api_route.c"
#include "../../discoveryd/webhook.h"
#include "token.h"

#define BODY_CAP    4096 /* limits.max_message, small so the fuzzer passes it */
#define CHUNK       512  /* bytes per upload call */
#define MAX_HEADERS 16
#define SECRET      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* as the seeds' tokens */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "fuzz_api: %s:%d: check failed: %s\n", \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

/* ---- libmicrohttpd stand-ins ------------------------------------------- */

struct MHD_Response {
	int refs;
	char *body;
	size_t len;
	bool has_allow;
	bool has_www_authenticate;
	bool is_json; /* Content-Type application/json */
};

struct MHD_Connection {
	char *names[MAX_HEADERS], *values[MAX_HEADERS];
	size_t n_headers;
	char *query; /* %-decoded "k=v\0k=v\0...", n pairs */
	size_t n_args;
	struct MHD_Response *queued;
	unsigned status;
	int answers;
};

/* The request being played, for store_call's checks, and the op it made. */
static struct MHD_Connection *current;
static enum hub_op last_op;
static struct auth *fuzz_auth;
static struct api_origin *fuzz_origin;
static struct api_conns *fuzz_conns;
static struct epboard *fuzz_board;     /* empty: nothing is published */
static struct api_blocks *fuzz_blocks; /* stopped: nothing blocks */
static struct token_secret secret;

struct MHD_Response *MHD_create_response_from_buffer(
	size_t size, void *buffer, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = calloc(1, sizeof(*r));

	CHECK(r != NULL);
	CHECK(buffer != NULL);
	r->refs = 1;
	r->len = size;
	if (mode == MHD_RESPMEM_MUST_FREE) {
		r->body = buffer;
	} else {
		r->body = malloc(size + 1);
		CHECK(r->body != NULL);
		memcpy(r->body, buffer, size);
	}
	return r;
}

enum MHD_Result MHD_add_response_header(struct MHD_Response *r,
					const char *header, const char *content)
{
	CHECK(r && header && content);
	if (strcmp(header, MHD_HTTP_HEADER_ALLOW) == 0)
		r->has_allow = content[0] != '\0';
	if (strcmp(header, MHD_HTTP_HEADER_WWW_AUTHENTICATE) == 0)
		r->has_www_authenticate = strncmp(content, "Bearer", 6) == 0;
	if (strcmp(header, MHD_HTTP_HEADER_CONTENT_TYPE) == 0)
		r->is_json = strcmp(content, "application/json") == 0;
	return MHD_YES;
}

/* The status queued, as libmicrohttpd reports it when a request ends. */
const union MHD_ConnectionInfo *MHD_get_connection_info(
	struct MHD_Connection *c, enum MHD_ConnectionInfoType type, ...)
{
	static union MHD_ConnectionInfo info;

	/* No entry in api_conn.c's table: its calls on a request are no-ops
	 * (admission and deadlines are tested with real sockets). */
	if (type == MHD_CONNECTION_INFO_SOCKET_CONTEXT)
		return NULL;
	/* No socket: a blocking query watches none for a hang-up. */
	if (type == MHD_CONNECTION_INFO_CONNECTION_FD)
		return NULL;
	CHECK(type == MHD_CONNECTION_INFO_HTTP_STATUS);
	info.http_status = (unsigned)c->status;
	return &info;
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *c,
				   unsigned int status, struct MHD_Response *r)
{
	CHECK(r != NULL);
	c->answers++;
	CHECK(c->answers == 1); /* one answer per request */
	r->refs++;
	c->queued = r;
	c->status = status;
	return MHD_YES;
}

void MHD_destroy_response(struct MHD_Response *r)
{
	if (!r || --r->refs > 0)
		return;
	free(r->body);
	free(r);
}

const char *MHD_lookup_connection_value(struct MHD_Connection *c,
					enum MHD_ValueKind kind,
					const char *key)
{
	if (kind == MHD_HEADER_KIND) {
		for (size_t i = 0; i < c->n_headers; i++)
			if (strcasecmp(c->names[i], key) == 0)
				return c->values[i];
		return NULL;
	}
	if (kind == MHD_GET_ARGUMENT_KIND) {
		const char *p = c->query;

		for (size_t i = 0; i < c->n_args; i++, p += strlen(p) + 1) {
			size_t n = strcspn(p, "=");

			if (strncmp(p, key, n) == 0 && key[n] == '\0')
				return p[n] ? p + n + 1 : "";
		}
	}
	return NULL;
}

/* The query's arguments one by one, with their lengths (api_sd.c). */
int MHD_get_connection_values_n(struct MHD_Connection *c,
				enum MHD_ValueKind kind,
				MHD_KeyValueIteratorN iterator, void *cls)
{
	const char *p = c->query;
	int n = 0;

	if (kind != MHD_GET_ARGUMENT_KIND)
		return 0;
	for (size_t i = 0; i < c->n_args; i++, p += strlen(p) + 1) {
		size_t k = strcspn(p, "=");

		n++;
		if (iterator &&
		    iterator(cls, kind, p, k, p[k] ? p + k + 1 : NULL,
			     p[k] ? strlen(p + k + 1) : 0) != MHD_YES)
			break;
	}
	return n;
}

/* ---- the hub stand-in: checks what api.c promises it ------------------- */

static bool valid_name_or_none(const char *s)
{
	return !s[0] || proto_valid_name(s);
}

static void check_keys_value(const cJSON *value)
{
	const cJSON *keys = cJSON_GetObjectItemCaseSensitive(value, "keys");
	const cJSON *k;
	int n = cJSON_GetArraySize(keys);

	CHECK(cJSON_IsObject(value) && cJSON_IsArray(keys));
	CHECK(n >= 1 && n <= KEYS_MAX);
	cJSON_ArrayForEach (k, keys) {
		CHECK(cJSON_IsString(k));
		CHECK(k->valuestring[0] &&
		      strlen(k->valuestring) <= KEY_LEN_MAX);
	}
}

/*
 * The hub turns an invalidation or a broadcast into an event frame for
 * agents (proto_encode_event); an agent that cannot decode a frame closes
 * its link with 1007, and on resume gets the same event again. So what
 * api.c accepts must encode to a frame proto_decode accepts.
 */
static void check_event_decodes(const struct hub_req *req, const char *kind)
{
	struct proto_event e = { .seq = UINT64_MAX,
				 .header = req->header,
				 .value = req->value };
	struct proto_msg msg;
	char err[160];
	size_t len = 0;
	char *frame;
	int rc;

	snprintf(e.epoch, sizeof(e.epoch), "9f2c");
	snprintf(e.kind, sizeof(e.kind), "%s", kind);
	snprintf(e.command, sizeof(e.command), "%s",
		 req->command[0] ? req->command : "DataSend");
	frame = proto_encode_event(&e, 0, &len);
	CHECK(frame != NULL);
	rc = proto_decode(frame, len, 0, &msg, err, sizeof(err));
	if (rc != PROTO_OK)
		fprintf(stderr,
			"fuzz_api: agents would refuse this event (%s): "
			"%.300s\n",
			err, frame);
	CHECK(rc == PROTO_OK);
	proto_msg_release(&msg);
	free(frame);
}

/* The role the request's token has, verified here apart from auth.c;
 * TOKEN_ROLE_NONE when it has none that verifies. */
static enum token_role caller_role(void)
{
	const char *value =
		MHD_lookup_connection_value(current, MHD_HEADER_KIND,
					    MHD_HTTP_HEADER_AUTHORIZATION);
	struct token_claims claims;

	if (!value || strncasecmp(value, "Bearer ", 7) != 0 ||
	    token_verify(value + 7, &secret, 1, (int64_t)time(NULL), &claims) !=
		    TOKEN_OK)
		return TOKEN_ROLE_NONE;
	return claims.role;
}

static bool changes_state(enum hub_op op)
{
	return op == HUB_DECLARE || op == HUB_CACHEREADY ||
	       op == HUB_INVALIDATE || op == HUB_BROADCAST || op == HUB_DRAIN;
}

/* /healthz asks; the hub is always serving here. */
enum hub_drain_state hub_drain_state(const struct hub *h)
{
	(void)h;
	return HUB_SERVING;
}

/* The board blocking queries wait on; answers to a woken caller, which
 * this harness never makes, would be printed as the hub prints them. */
struct epboard *hub_epboard(const struct hub *h)
{
	(void)h;
	return fuzz_board;
}

/* No webhooks here: api_webhook.c's routes are parsed, the list is
 * empty, and no call reaches a delivery thread. */
char *webhook_list_json(struct webhook *w)
{
	(void)w;
	return NULL;
}

int webhook_call(struct webhook *w, enum webhook_op op, const char *name,
		 uint64_t from, char *msg, size_t msglen)
{
	(void)w;
	(void)op;
	(void)name;
	(void)from;
	snprintf(msg, msglen, "none");
	return 503;
}

int webhook_put(struct webhook *w, const char *name,
		const struct dconf_webhook *def, const char *json, bool fresh,
		char *msg, size_t msglen)
{
	(void)w;
	(void)name;
	(void)def;
	(void)json;
	(void)fresh;
	snprintf(msg, msglen, "none");
	return 503;
}

void hub_answer(struct hub_req *req, int status, cJSON *body)
{
	req->status = status;
	req->body = body ? cJSON_PrintUnformatted(body) : NULL;
	cJSON_Delete(body);
	CHECK(req->body != NULL);
}

/* Every call is answered on the calling thread here (store_call): no
 * connection is suspended for a write. */
bool store_async(const struct store *s)
{
	(void)s;
	return false;
}

void store_submit(struct store *s, struct hub_req *req,
		  void (*done)(struct hub_req *req, void *arg), void *arg)
{
	(void)s;
	(void)req;
	(void)done;
	(void)arg;
	CHECK(!"store_submit without store_async");
}

void store_shed(struct store *s, bool on)
{
	(void)s;
	(void)on;
}

void store_call(struct store *s, struct hub_req *req)
{
	enum token_role role = caller_role();

	(void)s;
	last_op = req->op;
	if (changes_state(req->op) ?
		    role != TOKEN_ROLE_ADMIN :
		    role != TOKEN_ROLE_ADMIN && role != TOKEN_ROLE_READER)
		fprintf(stderr, "fuzz_api: hub op %d reached with a %s token\n",
			(int)req->op,
			role ? token_role_name(role) : "missing or bad");
	CHECK(changes_state(req->op) ?
		      role == TOKEN_ROLE_ADMIN :
		      role == TOKEN_ROLE_ADMIN || role == TOKEN_ROLE_READER);
	CHECK(req->service[sizeof(req->service) - 1] == '\0');
	CHECK(req->instance[sizeof(req->instance) - 1] == '\0');
	CHECK(valid_name_or_none(req->service));
	CHECK(!req->instance[0] || proto_valid_instance(req->instance));
	/* An Idempotency-Key reaches the hub only on a write, valid and
	 * scoped ("sub:SUB" or "", a newline, the key). */
	CHECK(req->idem_key[sizeof(req->idem_key) - 1] == '\0');
	if (req->idem_key[0]) {
		const char *nl = strchr(req->idem_key, '\n');

		CHECK(changes_state(req->op));
		CHECK(nl && idem_valid_key(nl + 1) && !strchr(nl + 1, '"'));
	}
	switch (req->op) {
	case HUB_DECLARE:
		CHECK(proto_valid_name(req->service));
		CHECK(req->decl == DECL_NONE || req->decl == DECL_READY ||
		      req->decl == DECL_NOTREADY);
		CHECK(req->ttl_ms >= 0);
		CHECK(req->ttl_ms == 0 || req->decl != DECL_NONE);
		CHECK(!req->header && !req->value);
		break;
	case HUB_INVALIDATE:
		CHECK(cJSON_IsObject(req->header));
		check_keys_value(req->value);
		check_event_decodes(req, "invalidate");
		break;
	case HUB_BROADCAST:
		CHECK(valid_command(req->command));
		CHECK(cJSON_IsObject(req->header));
		CHECK(req->value != NULL);
		check_event_decodes(req, "command");
		break;
	case HUB_SERVICE: CHECK(proto_valid_name(req->service)); break;
	case HUB_EVENTS: CHECK(req->limit <= 1000000); break;
	case HUB_SSE_OPEN: /* a live stream: refused below */
		CHECK(req->stream != NULL);
		break;
	case HUB_DRAIN: CHECK(proto_valid_instance(req->instance)); break;
	case HUB_ENDPOINTS:
		CHECK(proto_valid_name(req->service));
		CHECK(!req->tag[0] || proto_valid_name(req->tag));
		break;
	case HUB_CACHEREADY:
	case HUB_SERVICES:
	case HUB_AGENTS:
	case HUB_METRICS:
	case HUB_INFO: break;
	default: CHECK(!"api.c sent an op it has no route for");
	}
	cJSON_Delete(req->header);
	cJSON_Delete(req->value);
	req->header = req->value = NULL;
	req->status = req->op == HUB_INVALIDATE || req->op == HUB_BROADCAST ?
			      202 :
			      200;
	/* There is no hub thread to feed a stream: answer as one stopping. */
	if (req->op == HUB_SSE_OPEN)
		req->status = 503;
	req->body = strdup("{\"fuzz\":true}");
	CHECK(req->body != NULL);
}

/* ---- playing a request -------------------------------------------------- */

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %XX in place, as MHD_http_unescape; plus to space for arguments. */
static void unescape(char *s, bool plus)
{
	char *out = s;

	for (; *s; s++) {
		if (*s == '%' && hex(s[1]) >= 0 && hex(s[2]) >= 0) {
			*out++ = (char)(hex(s[1]) * 16 + hex(s[2]));
			s += 2;
		} else {
			*out++ = plus && *s == '+' ? ' ' : *s;
		}
	}
	*out = '\0';
}

/* Split "a=1&b=2" into c->query, one NUL-ended "k=v" per argument. */
static void parse_query(struct MHD_Connection *c, char *query)
{
	char *arg, *save = NULL;
	size_t used = 0;

	c->query = calloc(1, strlen(query) + 1);
	CHECK(c->query != NULL);
	for (arg = strtok_r(query, "&", &save); arg;
	     arg = strtok_r(NULL, "&", &save)) {
		unescape(arg, true);
		memcpy(c->query + used, arg, strlen(arg) + 1);
		used += strlen(arg) + 1;
		c->n_args++;
	}
}

/* Why body is not one JSON text (RFC 8259: UTF-8, no raw control
 * characters, one value and blanks around it), or NULL. Written apart from
 * proto.c's gate on purpose, as a second opinion. */
static const char *json_problem(const char *body, size_t len)
{
	const unsigned char *s = (const unsigned char *)body;
	const char *end = NULL;
	cJSON *json;

	for (size_t i = 0; i < len; i++) {
		size_t more = s[i] < 0x80  ? 0 :
			      s[i] >= 0xF0 ? 3 :
			      s[i] >= 0xE0 ? 2 :
					     1;
		uint32_t cp = more == 0 ? s[i] :
			      more == 1 ? s[i] & 0x1F :
			      more == 2 ? s[i] & 0x0F :
					  s[i] & 0x07;

		if (s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return "a control character or NUL";
		if ((s[i] & 0xC0) == 0x80 || s[i] >= 0xF8 || len - i <= more)
			return "not UTF-8";
		for (size_t k = 1; k <= more; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return "not UTF-8";
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) ||
		    (more == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return "not UTF-8";
		i += more;
	}
	json = cJSON_ParseWithLengthOpts(body, len, &end, false);
	cJSON_Delete(json);
	if (!json)
		return "not JSON";
	for (; end < body + len; end++)
		if (!strchr(" \t\r\n", *end))
			return "data after the JSON value";
	return NULL;
}

static void check_answer(const struct MHD_Connection *c)
{
	const struct MHD_Response *r = c->queued;
	cJSON *json, *error, *message;

	CHECK(c->answers == 1 && r);
	CHECK(c->status >= 200 && c->status <= 599);
	/* The dashboard (HTML) and /metrics (text) are the only answers that
	 * are not JSON, and only when they succeed. */
	if (!r->is_json) {
		CHECK(c->status == 200);
		return;
	}
	json = cJSON_ParseWithLength(r->body, r->len);
	CHECK(cJSON_IsObject(json));
	if (c->status >= 400) {
		error = cJSON_GetObjectItemCaseSensitive(json, "error");
		message = cJSON_GetObjectItemCaseSensitive(json, "message");
		CHECK(cJSON_IsString(error) && cJSON_IsString(message));
	}
	if (c->status == 405)
		CHECK(r->has_allow);
	if (c->status == 401)
		CHECK(r->has_www_authenticate);
	cJSON_Delete(json);
}

/* An accepted call that reads a body (a declaration, an invalidation, a
 * broadcast; the others ignore theirs) had none (blanks at most) or one
 * JSON text: trailing data, NUL bytes or bad UTF-8 must be a 400, not
 * half-read. */
static void check_accepted_body(const struct MHD_Connection *c,
				const char *body, size_t len)
{
	const char *problem;
	size_t i = 0;

	if (c->status < 200 || c->status > 299 ||
	    (last_op != HUB_DECLARE && last_op != HUB_INVALIDATE &&
	     last_op != HUB_BROADCAST))
		return;
	while (i < len && strchr(" \t\r\n", body[i]) && body[i])
		i++;
	if (i == len)
		return;
	problem = json_problem(body, len);
	if (problem)
		fprintf(stderr, "fuzz_api: %u for a body that is %s: %.*s\n",
			c->status, problem, (int)(len < 300 ? len : 300), body);
	CHECK(problem == NULL);
}

/* One request through handler() as libmicrohttpd drives it. */
static void play(struct MHD_Connection *c, const char *method, char *target,
		 const char *body, size_t body_len)
{
	struct api a = { .mhd = NULL,
			 .hub = NULL,
			 .auth = fuzz_auth,
			 .origin = fuzz_origin,
			 .conns = fuzz_conns,
			 .blocks = fuzz_blocks };
	char *query = strchr(target, '?');
	void *con_cls = NULL;
	size_t zero = 0, done = 0;
	enum MHD_Result ret;

	atomic_init(&a.max_body, BODY_CAP);
	if (query) {
		*query++ = '\0';
		parse_query(c, query);
	}
	unescape(target, false);
	current = c;
	last_op = 0;

	ret = handler(&a, c, target, method, "HTTP/1.1", NULL, &zero, &con_cls);
	while (ret == MHD_YES && !c->answers && done < body_len) {
		size_t n = body_len - done < CHUNK ? body_len - done : CHUNK;
		size_t left = n;

		ret = handler(&a, c, target, method, "HTTP/1.1", body + done,
			      &left, &con_cls);
		CHECK(left == 0); /* the handler takes every byte it is given */
		done += n;
	}
	if (ret == MHD_YES && !c->answers)
		ret = handler(&a, c, target, method, "HTTP/1.1", NULL, &zero,
			      &con_cls);
	if (ret == MHD_YES) {
		check_answer(c);
		check_accepted_body(c, body, body_len);
	}
	completed(&a, c, &con_cls, MHD_REQUEST_TERMINATED_COMPLETED_OK);
	CHECK(con_cls == NULL);
	MHD_destroy_response(c->queued);
	free(c->query);
	current = NULL;
}

/* auth.c reads its secret from a file: write one, load it, remove it. */
static void start_auth(void)
{
	char dir[] = "/tmp/fuzz_api.XXXXXX", path[64], err[256];
	struct dconf conf;
	FILE *f;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/secret", dir);
	f = fopen(path, "w");
	CHECK(f && fputs(SECRET, f) >= 0 && fclose(f) == 0);
	CHECK(chmod(path, 0600) == 0);
	memset(&conf, 0, sizeof(conf));
	conf.auth_present = true;
	conf.auth_secret_file = path;
	fuzz_auth = auth_new(&conf, err, sizeof(err));
	if (!fuzz_auth)
		fprintf(stderr, "fuzz_api: %s\n", err);
	CHECK(fuzz_auth && auth_enabled(fuzz_auth));
	CHECK(token_load_secret(path, &secret, err, sizeof(err)) == 0);
	unlink(path);
	rmdir(dir);
	/* listen.http 127.0.0.1: Host names 127.0.0.1 and localhost pass. */
	snprintf(conf.listen_http.host, sizeof(conf.listen_http.host),
		 "127.0.0.1");
	fuzz_origin = api_origin_new(&conf);
	CHECK(fuzz_origin != NULL);
	{
		struct api_conn_limits lim = { 4, 4, 1, 1, 1000, 1000 };

		fuzz_conns = api_conns_new(&lim);
		CHECK(fuzz_conns != NULL);
	}
	/* A blocking query is parsed and checked for real (api_block.c);
	 * stopped, the table answers it at once, as when draining. */
	fuzz_board = epboard_new();
	CHECK(fuzz_board != NULL);
	fuzz_blocks = api_blocks_new(fuzz_board);
	CHECK(fuzz_blocks != NULL);
	api_blocks_stop(fuzz_blocks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct MHD_Connection c;
	const char *body = NULL;
	char *head, *line, *method, *target, *save = NULL, *save_line = NULL;
	size_t head_len = size, body_len = 0;

	if (!fuzz_auth)
		start_auth();
	/* The head ends at a blank line; the body follows it. */
	for (size_t i = 0; i + 1 < size; i++) {
		if (data[i] == '\n' && data[i + 1] == '\n') {
			head_len = i + 1;
			body = (const char *)data + i + 2;
			body_len = size - i - 2;
			break;
		}
	}
	/* libmicrohttpd hands over NUL-terminated method, URL and headers. */
	if (memchr(data, '\0', head_len))
		return 0;
	head = strndup((const char *)data, head_len);
	CHECK(head != NULL);
	memset(&c, 0, sizeof(c));
	line = strtok_r(head, "\n", &save_line);
	method = line ? strtok_r(line, " ", &save) : NULL;
	target = method ? strtok_r(NULL, " ", &save) : NULL;
	while ((line = strtok_r(NULL, "\n", &save_line)) &&
	       c.n_headers < MAX_HEADERS) {
		char *colon = strchr(line, ':');

		if (!colon)
			continue;
		*colon = '\0';
		c.names[c.n_headers] = line;
		c.values[c.n_headers++] = colon + 1 + strspn(colon + 1, " \t");
	}
	if (target)
		play(&c, method, target, body ? body : "", body_len);
	free(head);
	return 0;
}
