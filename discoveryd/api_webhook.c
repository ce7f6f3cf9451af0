/*
 * api_webhook: the webhooks' routes (docs/api.md, "Webhooks"):
 *
 *   GET    /api/discovery/webhooks                   every endpoint's state
 *   POST   /api/discovery/webhooks/NAME/enable       after a 410 or max_age
 *   POST   /api/discovery/webhooks/NAME/replay?from=SEQ
 *   POST   /api/discovery/webhooks/NAME/test         a test notice, now
 *   PUT    /api/discovery/webhooks/NAME[?start=now]  create or replace
 *   DELETE /api/discovery/webhooks/NAME
 *
 * Reads need the reader role, changes the admin one (api_route checks
 * both before it gets here). Each change is run on the delivery thread
 * (webhook_call), which never blocks for long.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "api_int.h"
#include "dconf.h"
#include "proto.h"
#include "webhook.h"

static enum MHD_Result answer(struct MHD_Connection *c, int status,
			      const char *name, const char *msg)
{
	cJSON *o;
	char *text;

	if (status != 200 && status != 201)
		return api_send_error(c, status,
				      status == 404 ? "not_found" :
				      status == 409 ? "conflict" :
				      status == 422 ? "not_retained" :
				      status == 500 ? "internal" :
				      status == 502 ? "bad_gateway" :
				      status == 503 ? "unavailable" :
						      "bad_request",
				      "%s", msg);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "webhook", name);
	cJSON_AddStringToObject(o, "result", msg);
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return api_send_json(c, status, text);
}

/* PUT .../webhooks/NAME: the body is a webhooks: entry, in JSON, taken
 * by the config's own rows and checks (dconf_webhook_parse), so that both
 * accept the same and say the same. */
static enum MHD_Result do_put(struct webhook *w, struct MHD_Connection *c,
			      const char *name, const struct request *r)
{
	const char *start =
		MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "start");
	struct dconf_webhook def;
	char why[600], msg[700], *text;
	cJSON *json;
	int rc;

	if (!proto_valid_name(name))
		return api_send_error(c, 400, "bad_request",
				      "'%.*s' is not a webhook name (1 to %d "
				      "of a-z, 0-9, '-', '_', '.', the first "
				      "a letter or digit)",
				      PROTO_NAME_MAX, name, PROTO_NAME_MAX);
	if (start && strcmp(start, "now") != 0 && strcmp(start, "cursor") != 0)
		return api_send_error(c, 400, "bad_request",
				      "start is 'cursor' (the default) or "
				      "'now'");
	if (!r->len)
		return api_send_error(c, 400, "bad_request",
				      "a JSON body is required: the "
				      "endpoint's url, secret_file, ...");
	json = proto_parse_json(r->body, r->len, PROTO_DEPTH_MAX, why,
				sizeof(why));
	if (!json)
		return api_send_error(c, 400, "bad_request",
				      "the body is not JSON: %s", why);
	if (!cJSON_IsObject(json)) {
		cJSON_Delete(json);
		return api_send_error(c, 400, "bad_request",
				      "the body must be a JSON object");
	}
	rc = dconf_webhook_parse(r->body, r->len, "body", name, &def, why,
				 sizeof(why));
	text = rc == 0 ? cJSON_PrintUnformatted(json) : NULL;
	cJSON_Delete(json);
	if (rc != 0) {
		dconf_webhook_release(&def);
		return api_send_error(c, rc == -2 ? 422 : 400,
				      rc == -2 ? "invalid" : "bad_request",
				      "%s", why);
	}
	if (!text || !w) {
		dconf_webhook_release(&def);
		free(text);
		if (!text)
			return api_send_error(c, 503, "unavailable",
					      "out of memory");
		return api_send_error(c, 503, "unavailable",
				      "webhooks are not running");
	}
	rc = webhook_put(w, name, &def, text, start && !strcmp(start, "now"),
			 msg, sizeof(msg));
	dconf_webhook_release(&def);
	free(text);
	return answer(c, rc, name, msg);
}

enum MHD_Result api_route_webhooks(struct api *a, struct MHD_Connection *c,
				   const char *rest, const char *method,
				   const struct request *r)
{
	struct webhook *w =
		atomic_load_explicit(&a->webhooks, memory_order_acquire);
	char name[PROTO_NAME_MAX + 1], msg[256];
	const char *slash, *action;
	enum webhook_op op;
	uint64_t from = 0;
	size_t n;

	if (!*rest) {
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			return api_send_405(c, "GET, HEAD");
		return api_send_json(c, 200,
				     w ? webhook_list_json(w) :
					 strdup("{\"webhooks\":[]}"));
	}
	rest++; /* the '/' */
	slash = strchr(rest, '/');
	n = slash ? (size_t)(slash - rest) : strlen(rest);
	action = slash ? slash + 1 : "";
	if (!slash && strcmp(method, "PUT") == 0) {
		char put[PROTO_NAME_MAX + 2];

		snprintf(put, sizeof(put), "%.*s", (int)n, rest);
		return do_put(w, c, put, r);
	}
	if (n == 0 || n > PROTO_NAME_MAX)
		return api_send_error(c, 404, "not_found", "no such webhook");
	memcpy(name, rest, n);
	name[n] = '\0';
	if (!*action) {
		if (strcmp(method, "DELETE") != 0)
			return api_send_405(c, "PUT, DELETE");
		op = WEBHOOK_DELETE;
	} else if (strcmp(action, "enable") == 0 ||
		   strcmp(action, "replay") == 0 ||
		   strcmp(action, "test") == 0) {
		if (strcmp(method, "POST") != 0)
			return api_send_405(c, "POST");
		op = action[0] == 'e' ? WEBHOOK_ENABLE :
		     action[0] == 'r' ? WEBHOOK_REPLAY :
					WEBHOOK_TEST;
	} else {
		return api_send_error(c, 404, "not_found", "no such route");
	}
	if (op == WEBHOOK_REPLAY) {
		const char *v =
			MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
						    "from");

		if (!v || !proto_parse_u64(v, strlen(v), &from) || from == 0)
			return api_send_error(c, 400, "bad_request",
					      "replay needs ?from=SEQ, a seq "
					      "of 1 or more");
	}
	if (!w)
		return api_send_error(c, 404, "not_found",
				      "no webhook named %s", name);
	return answer(c, webhook_call(w, op, name, from, msg, sizeof(msg)),
		      name, msg);
}
