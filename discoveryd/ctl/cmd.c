/*
 * cmd: one build function per discoveryctl command, and cmd_run, which
 * sends the request and turns the answer into output and an exit code. See
 * cmd.h for how the two halves split.
 *
 * Build functions check everything the server would check that can be
 * checked here (service names, durations, JSON), so that a typo costs no
 * round trip and never reaches the agents as a half-right broadcast.
 */
#include "cmd.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <openssl/rand.h>

#include "backoff.h"
#include "client.h"
#include "conf.h"
#include "util.h"

#define API "/api/discovery"
/* A write is tried this many times in all, the delays growing from
 * RETRY_INITIAL_MS (jittered). */
#define RETRY_ATTEMPTS   7
#define RETRY_INITIAL_MS 250
#define RETRY_MAX_MS     4000
/* Longest instance id or command name we send; the server has its own cap. */
#define NAME_MAX_LEN 255

static char *format_path(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static char *format_path(const char *fmt, ...)
{
	va_list ap;
	int len;
	char *path;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0)
		util_die(CTL_EXIT_UNAVAILABLE, "cannot format a request path");
	path = util_malloc((size_t)len + 1);
	va_start(ap, fmt);
	vsnprintf(path, (size_t)len + 1, fmt, ap);
	va_end(ap);
	return path;
}

/* The JSON text of root, which is freed. */
static char *json_text(cJSON *root)
{
	char *text = cJSON_PrintUnformatted(root);

	cJSON_Delete(root);
	if (!text)
		util_die(CTL_EXIT_UNAVAILABLE, "out of memory");
	return text;
}

static bool is_lower_or_digit(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool cmd_valid_service(const char *name)
{
	size_t len = strlen(name);

	if (len < 1 || len > 63 || !is_lower_or_digit(name[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!is_lower_or_digit(name[i]) && !strchr("_.-", name[i]))
			return false;
	return true;
}

static const char *checked_service(const char *option, const char *name)
{
	if (!cmd_valid_service(name))
		util_usage_error("%s'%s' is not a service name: 1 to 63 of "
				 "a-z, 0-9, '_', '.', '-', starting with a "
				 "letter or digit",
				 option, name);
	return name;
}

/* Instance ids and command names: free text, but printable and bounded. */
static const char *checked_name(const char *option, const char *value)
{
	if (!value[0] || strlen(value) > NAME_MAX_LEN ||
	    util_has_control(value))
		util_usage_error("%s must be 1 to %d printable characters",
				 option, NAME_MAX_LEN);
	return value;
}

/* ready, notready, auto: the same service object comes back. */
static void declaration(const struct cmd_args *args, struct cmd_request *req,
			const char *method, const char *action)
{
	const char *service = checked_service("", args->positional[0]);

	req->method = method;
	req->path = format_path(API "/services/%s/%s", service, action);
	req->body = NULL;
	req->render = RENDER_SERVICE;
}

void cmd_ready(const struct cmd_args *args, struct cmd_request *req)
{
	int64_t ttl_ms;
	cJSON *root;

	declaration(args, req, "POST", "ready");
	if (!args->ttl)
		return;
	/* Checked here, sent as typed: the daemon parses the same syntax. */
	if (conf_parse_duration(args->ttl, &ttl_ms) != 0 || ttl_ms <= 0)
		util_usage_error("--ttl '%s' is not a positive duration such "
				 "as 250ms, 30s, 5m or 1h",
				 args->ttl);
	root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "ttl", args->ttl);
	req->body = json_text(root);
}

void cmd_notready(const struct cmd_args *args, struct cmd_request *req)
{
	declaration(args, req, "POST", "notready");
}

void cmd_auto(const struct cmd_args *args, struct cmd_request *req)
{
	declaration(args, req, "DELETE", "declaration");
}

void cmd_invalidate(const struct cmd_args *args, struct cmd_request *req)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *keys = cJSON_AddArrayToObject(root, "keys");

	for (size_t i = 0; i < args->npositional; i++) {
		if (!args->positional[i][0])
			util_usage_error("invalidate: a key cannot be empty");
		cJSON_AddItemToArray(keys,
				     cJSON_CreateString(args->positional[i]));
	}
	if (args->service)
		cJSON_AddStringToObject(root, "service",
					checked_service("--service ",
							args->service));
	req->method = "POST";
	req->path = format_path(API "/invalidate");
	req->body = json_text(root);
	req->render = RENDER_ACK;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Exactly the JSON number grammar (cJSON alone also takes "1." or "+1"). */
static bool is_json_number(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (is_digit(*s))
		while (is_digit(*s))
			s++;
	else
		return false;
	if (*s == '.') {
		if (!is_digit(*++s))
			return false;
		while (is_digit(*s))
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!is_digit(*s))
			return false;
		while (is_digit(*s))
			s++;
	}
	return *s == '\0';
}

/*
 * A --header value: a JSON number, true, false or null when text is one
 * (so CacheReady=1 arrives as the number NetCoreStack apps test for), a
 * quoted JSON string when text is one ("1" forces a string), else the text
 * itself as a string. Numbers go out as typed, so no digit is lost to a
 * double on the way.
 */
static cJSON *header_value(const char *text)
{
	cJSON *parsed;
	cJSON *value = NULL;

	if (is_json_number(text))
		return cJSON_CreateRaw(text);
	if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
		return cJSON_CreateBool(text[0] == 't');
	if (strcmp(text, "null") == 0)
		return cJSON_CreateNull();
	if (text[0] == '"') {
		parsed = cJSON_ParseWithOpts(text, NULL, true);
		if (cJSON_IsString(parsed))
			value = cJSON_CreateString(parsed->valuestring);
		cJSON_Delete(parsed);
	}
	return value ? value : cJSON_CreateString(text);
}

static cJSON *broadcast_headers(const struct cmd_args *args)
{
	cJSON *header = cJSON_CreateObject();

	for (size_t i = 0; i < args->nheaders; i++) {
		const char *text = args->headers[i];
		const char *eq = strchr(text, '=');
		char *key;

		if (!eq || eq == text)
			util_usage_error("--header '%s' is not KEY=VALUE",
					 text);
		key = util_strndup(text, (size_t)(eq - text));
		if (cJSON_GetObjectItemCaseSensitive(header, key))
			util_usage_error("--header %s is given twice", key);
		cJSON_AddItemToObject(header, key, header_value(eq + 1));
		free(key);
	}
	return header;
}

/* --value as typed, after checking that it is one JSON document. */
static cJSON *broadcast_value(const char *text)
{
	const char *end = NULL;
	cJSON *parsed = cJSON_ParseWithOpts(text, &end, true);

	if (!parsed)
		util_usage_error("--value is not valid JSON (at byte %zu)",
				 end ? (size_t)(end - text) : (size_t)0);
	cJSON_Delete(parsed);
	return cJSON_CreateRaw(text);
}

void cmd_broadcast(const struct cmd_args *args, struct cmd_request *req)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *target;

	if (!args->command)
		util_usage_error("broadcast needs --command NAME");
	cJSON_AddStringToObject(root, "command",
				checked_name("--command", args->command));
	cJSON_AddItemToObject(root, "header", broadcast_headers(args));
	if (args->value)
		cJSON_AddItemToObject(root, "value",
				      broadcast_value(args->value));
	if (args->service || args->instance) {
		target = cJSON_AddObjectToObject(root, "target");
		if (args->service)
			cJSON_AddStringToObject(target, "service",
						checked_service("--service ",
								args->service));
		if (args->instance)
			cJSON_AddStringToObject(target, "instance",
						checked_name("--instance",
							     args->instance));
	}
	req->method = "POST";
	req->path = format_path(API "/broadcast");
	req->body = json_text(root);
	req->render = RENDER_ACK;
}

/* Commands that only read, or take no argument: a method and a path. */
static void simple(struct cmd_request *req, const char *method,
		   const char *path, enum render_kind render)
{
	req->method = method;
	req->path = util_strdup(path);
	req->body = NULL;
	req->render = render;
}

void cmd_services(const struct cmd_args *args, struct cmd_request *req)
{
	(void)args;
	simple(req, "GET", API "/services", RENDER_SERVICES);
}

void cmd_service(const struct cmd_args *args, struct cmd_request *req)
{
	const char *service = checked_service("", args->positional[0]);

	req->method = "GET";
	req->path = format_path(API "/services/%s", service);
	req->body = NULL;
	req->render = RENDER_SERVICE;
}

void cmd_agents(const struct cmd_args *args, struct cmd_request *req)
{
	(void)args;
	simple(req, "GET", API "/agents", RENDER_AGENTS);
}

/* Every endpoint, ready or not: the STATE column tells them apart. */
void cmd_endpoints(const struct cmd_args *args, struct cmd_request *req)
{
	const char *service = checked_service("", args->positional[0]);

	req->method = "GET";
	req->path =
		format_path(API "/services/%s/endpoints?state=any", service);
	req->body = NULL;
	req->render = RENDER_ENDPOINTS;
}

void cmd_cacheready(const struct cmd_args *args, struct cmd_request *req)
{
	(void)args;
	simple(req, "POST", API "/cacheready", RENDER_CACHEREADY);
}

void cmd_events(const struct cmd_args *args, struct cmd_request *req)
{
	const char *after = args->after;
	unsigned long long seq;
	char *end;

	if (!after) {
		simple(req, "GET", API "/events", RENDER_EVENTS);
		return;
	}
	/* strtoull alone would take "-1", " 7" or "0x10". */
	errno = 0;
	seq = strtoull(after, &end, 10);
	if (!is_digit(after[0]) || *end || errno == ERANGE)
		util_usage_error("--after '%s' is not a seq (a number from 0 "
				 "to 18446744073709551615)",
				 after);
	req->method = "GET";
	req->path = format_path(API "/events?after=%llu", seq);
	req->body = NULL;
	req->render = RENDER_EVENTS;
}

/* A node name as one path segment: what is not unreserved is %-encoded. */
static char *path_segment(const char *text)
{
	char *out = util_malloc(strlen(text) * 3 + 1), *p = out;

	for (; *text; text++) {
		unsigned char c = (unsigned char)*text;

		if (is_lower_or_digit((char)c) || (c >= 'A' && c <= 'Z') ||
		    strchr("-._~", c))
			*p++ = (char)c;
		else
			p += sprintf(p, "%%%02X", c);
	}
	*p = '\0';
	return out;
}

void cmd_drain(const struct cmd_args *args, struct cmd_request *req)
{
	char *node = path_segment(checked_name("NODE", args->positional[0]));

	req->method = "POST";
	req->path = format_path(API "/nodes/%s/drain", node);
	req->body = NULL;
	req->render = RENDER_DRAIN;
	free(node);
}

/*
 * webhooks                list the endpoints
 * webhooks test NAME      post a test notice to NAME now
 * webhooks replay NAME SEQ  send again from SEQ
 * webhooks enable NAME    after a 410 or retry.max_age
 * webhooks delete NAME    stop delivering to NAME
 * webhooks put NAME ...   create or replace NAME (webhook_body.c)
 */
void cmd_webhooks(const struct cmd_args *args, struct cmd_request *req)
{
	const char *action = args->npositional ? args->positional[0] : "list";
	size_t want = strcmp(action, "list") == 0   ? 1 :
		      strcmp(action, "replay") == 0 ? 3 :
		      strcmp(action, "test") == 0 ||
				      strcmp(action, "enable") == 0 ||
				      strcmp(action, "delete") == 0 ||
				      strcmp(action, "put") == 0 ?
						      2 :
						      0;
	const char *name;
	unsigned long long seq;
	char *end;

	if (!want)
		util_usage_error("webhooks: '%s' is not list, test, replay, "
				 "enable, delete or put",
				 action);
	if (strcmp(action, "put") != 0 &&
	    (args->url || args->ca_file || args->kinds || args->services ||
	     args->max_in_flight || args->file || args->start_now ||
	     args->secret_file))
		util_usage_error("webhooks %s: the endpoint's flags go with "
				 "put only",
				 action);
	if (args->npositional > want || (args->npositional < want && want > 1))
		util_usage_error("usage: webhooks [list | test NAME | replay "
				 "NAME SEQ | enable NAME | delete NAME | put "
				 "NAME ...]");
	req->body = NULL;
	if (want == 1) {
		req->method = "GET";
		req->path = format_path(API "/webhooks");
		req->render = RENDER_WEBHOOKS;
		return;
	}
	name = checked_service("webhook name ", args->positional[1]);
	req->render = RENDER_WEBHOOK_ACTION;
	if (strcmp(action, "delete") == 0) {
		req->method = "DELETE";
		req->path = format_path(API "/webhooks/%s", name);
		return;
	}
	if (strcmp(action, "put") == 0) {
		req->method = "PUT";
		req->body = webhook_put_body(args);
		req->path = format_path(API "/webhooks/%s%s", name,
					args->start_now ? "?start=now" : "");
		return;
	}
	req->method = "POST";
	if (want == 3) {
		errno = 0;
		seq = strtoull(args->positional[2], &end, 10);
		if (!is_lower_or_digit(args->positional[2][0]) || *end ||
		    errno || seq == 0)
			util_usage_error("replay: SEQ must be a seq of 1 or "
					 "more");
		req->path = format_path(API "/webhooks/%s/replay?from=%llu",
					name, seq);
		return;
	}
	req->path = format_path(API "/webhooks/%s/%s", name, action);
}

void cmd_request_release(struct cmd_request *req)
{
	free(req->path);
	free(req->body);
	req->path = NULL;
	req->body = NULL;
}

/* The exit-code contract, from the HTTP status of an answer. */
static int exit_code(long status)
{
	if (status >= 200 && status < 300)
		return CTL_EXIT_OK;
	if (status == 404)
		return CTL_EXIT_NOT_FOUND;
	if (status >= 400 && status < 500)
		return CTL_EXIT_REFUSED;
	/* 5xx, and 1xx/3xx that a conforming server never gives here. */
	return CTL_EXIT_UNAVAILABLE;
}

static int show_answer(const struct cmd_settings *settings,
		       const struct cmd_request *req,
		       const struct client_response *resp)
{
	int code = exit_code(resp->status);
	cJSON *root;

	if (code != CTL_EXIT_OK) {
		render_error(resp->status, resp->body, resp->len);
		return code;
	}
	root = cJSON_ParseWithLength(resp->body, resp->len);
	if (!root) {
		fprintf(stderr,
			CTL_PROG ": the server's answer is not JSON "
				 "(HTTP %ld)\n",
			resp->status);
		return CTL_EXIT_UNAVAILABLE;
	}
	/*
	 * An answer of another shape (a newer daemon, an endpoint still
	 * changing) is shown as it came: the request did succeed, and a
	 * script must not retry a broadcast that went out.
	 */
	if (settings->json ||
	    render_table(req->render, root, stdout, settings->color) != 0)
		render_json_line(resp->body, resp->len, stdout);
	cJSON_Delete(root);
	return CTL_EXIT_OK;
}

/* A fresh Idempotency-Key: 128 random bits in hex. 0, or -1. */
static int new_key(char *out)
{
	unsigned char raw[16];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

static void sleep_ms(uint32_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * Send req. A write carries an Idempotency-Key and is sent again with the
 * same key when the answer is lost (no connection, timeout), 503 (Redis
 * or the disk could not take it) or 409 (the first try is still running):
 * the server makes the change once whichever try got through. A read is
 * sent once.
 */
static int send_request(struct client *client,
			const struct cmd_settings *settings,
			const struct cmd_request *req,
			struct client_response *resp, char *err, size_t errlen)
{
	bool write = strcmp(req->method, "GET") != 0;
	const char *key = settings->idempotency_key;
	char fresh[33];
	struct backoff b;
	int rc;

	if (!write)
		return client_request(client, req->method, req->path, req->body,
				      NULL, resp, err, errlen);
	if (!key && new_key(fresh) == 0)
		key = fresh;
	backoff_init(&b, RETRY_INITIAL_MS, RETRY_MAX_MS, 2.0, 0);
	for (int attempt = 1;; attempt++) {
		rc = client_request(client, req->method, req->path, req->body,
				    key, resp, err, errlen);
		if (!key || attempt == RETRY_ATTEMPTS ||
		    rc == CLIENT_E_TOO_BIG ||
		    (rc == CLIENT_OK && resp->status != 503 &&
		     resp->status != 409))
			return rc;
		if (rc == CLIENT_OK)
			client_response_release(resp);
		sleep_ms(backoff_ceiling(&b) / 2 + backoff_next(&b) / 2);
	}
}

int cmd_run(const struct cmd_settings *settings, const struct cmd_request *req)
{
	struct client_config config = {
		.base_url = settings->base_url,
		.token = settings->token,
		.timeout_ms = settings->timeout_ms,
		.cacert = settings->cacert,
	};
	struct client_response resp = { 0 };
	char err[CTL_ERR_SIZE];
	struct client *client = client_new(&config, err, sizeof(err));
	int code;

	if (!client) {
		fprintf(stderr, CTL_PROG ": %s\n", err);
		return CTL_EXIT_UNAVAILABLE;
	}
	if (send_request(client, settings, req, &resp, err, sizeof(err)) !=
	    CLIENT_OK) {
		fprintf(stderr, CTL_PROG ": %s\n", err);
		code = CTL_EXIT_UNAVAILABLE;
	} else {
		code = show_answer(settings, req, &resp);
		client_response_release(&resp);
	}
	client_free(client);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		/* A full disk or closed pipe must not look like success. */
		fprintf(stderr, CTL_PROG ": cannot write the output\n");
		if (code == CTL_EXIT_OK)
			code = CTL_EXIT_UNAVAILABLE;
	}
	return code;
}
