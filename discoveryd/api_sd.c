/*
 * api_sd: GET /api/discovery/sd/prometheus, the ready endpoints as
 * Prometheus's HTTP service discovery wants them (docs/api.md,
 * "Prometheus service discovery"): a JSON array of target groups,
 * {"targets":["host:port"],"labels":{...}}.
 *
 * Prometheus gives a group's labels to every target in it, and the labels
 * that matter here (instance, node, tags) differ from one endpoint to the
 * next, so each ready endpoint is a group of its own: one target, its
 * labels. Groups come sorted by service, then node and instance, so two
 * answers for the same sets are the same bytes.
 *
 * It reads the sets the hub published last (epboard.h), the same the
 * endpoints route answers from, on the request's own thread: no hop to
 * the hub, and in cluster mode the sets already span every node. The
 * reader role suffices (api_route checks it before it gets here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "api_int.h"
#include "epboard.h"
#include "hub.h"
#include "proto.h"

#define SD_SERVICES_MAX 64 /* names in ?service= */
#define META_PREFIX     "__meta_discovery_"
#define SERVICE_RULE                                                           \
	"'service' must be service names ([a-z0-9][a-z0-9_.-]{0,62}), "        \
	"repeated or comma-separated, at most 64"

/* What ?service= asks for: n == 0 is every service. */
struct sd_filter {
	char names[SD_SERVICES_MAX][PROTO_NAME_MAX + 1];
	size_t n;
	const char *bad; /* the first problem, for the 400 */
};

static void add_name(struct sd_filter *f, const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > PROTO_NAME_MAX) {
		f->bad = SERVICE_RULE;
		return;
	}
	if (f->n == SD_SERVICES_MAX) {
		f->bad = "'service' names at most 64 services";
		return;
	}
	memcpy(f->names[f->n], s, len);
	f->names[f->n][len] = '\0';
	if (!proto_valid_name(f->names[f->n])) {
		f->bad = SERVICE_RULE;
		return;
	}
	for (i = 0; i < f->n; i++)
		if (strcmp(f->names[i], f->names[f->n]) == 0)
			return; /* named twice: once is enough */
	f->n++;
}

/* libmicrohttpd's walk over the query, repeated keys included. The
 * lengths are its own: a %00 would end a C string early, and "web%00x"
 * must not pass for "web". */
static enum MHD_Result take_arg(void *cls, enum MHD_ValueKind kind,
				const char *key, size_t key_size,
				const char *value, size_t value_size)
{
	struct sd_filter *f = cls;

	(void)kind;
	if (f->bad)
		return MHD_NO;
	if (strlen(key) != key_size || (value && strlen(value) != value_size)) {
		f->bad = "a query parameter holds a NUL byte";
		return MHD_NO;
	}
	if (strcmp(key, "token") == 0) /* a read's token (api_route) */
		return MHD_YES;
	if (strcmp(key, "service") != 0) {
		f->bad = "unknown query parameter: only 'service' is taken";
		return MHD_NO;
	}
	if (!value)
		value = "";
	for (;;) {
		const char *comma = strchr(value, ',');
		size_t len = comma ? (size_t)(comma - value) : strlen(value);

		add_name(f, value, len);
		if (!comma || f->bad)
			break;
		value = comma + 1;
	}
	return f->bad ? MHD_NO : MHD_YES;
}

static bool wanted(const struct sd_filter *f, const char *service)
{
	if (f->n == 0)
		return true;
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->names[i], service) == 0)
			return true;
	return false;
}

/* "__meta_discovery_meta_KEY": KEY with what a label name may not hold
 * made '_', as Prometheus's own discoveries do. */
static char *meta_label(const char *key)
{
	static const char prefix[] = META_PREFIX "meta_";
	size_t n = strlen(key);
	char *name = malloc(sizeof(prefix) + n);

	if (!name)
		return NULL;
	memcpy(name, prefix, sizeof(prefix) - 1);
	for (size_t i = 0; i < n; i++) {
		char ch = key[i];
		bool ok = (ch >= 'a' && ch <= 'z') ||
			  (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '_';

		name[sizeof(prefix) - 1 + i] = ok ? ch : '_';
	}
	name[sizeof(prefix) - 1 + n] = '\0';
	return name;
}

/*
 * The meta's string values as labels, and with a metrics_port in it (an
 * instance that serves its metrics on a port of its own: the sidecar's
 * health listener, docs/sidecar.md) the address to scrape them at.
 * Two keys that come out as one name: the first wins.
 */
static void add_meta(cJSON *labels, const struct ep *e)
{
	cJSON *meta = cJSON_Parse(e->meta);
	const cJSON *v;

	cJSON_ArrayForEach (v, meta) {
		char *name;

		if (!cJSON_IsString(v) || !v->string[0])
			continue;
		if (strcmp(v->string, "metrics_port") == 0) {
			uint64_t port;
			char addr[PROTO_ADDRESS_MAX + 8];
			const char *p = v->valuestring;

			if (proto_parse_u64(p, strlen(p), &port) && port >= 1 &&
			    port <= 65535) {
				snprintf(addr, sizeof(addr),
					 e->family == AF_INET6 ? "[%s]:%u" :
								 "%s:%u",
					 e->host, (unsigned)port);
				cJSON_AddStringToObject(labels,
							META_PREFIX
							"metrics_address",
							addr);
			}
		}
		if (!(name = meta_label(v->string)))
			continue;
		if (!cJSON_GetObjectItemCaseSensitive(labels, name))
			cJSON_AddStringToObject(labels, name, v->valuestring);
		free(name);
	}
	cJSON_Delete(meta);
}

/* ",blue,eu-1," (Consul's way: a regex can match ",blue,"); "" without. */
static char *joined_tags(const struct ep *e)
{
	size_t n = 2;
	char *s, *at;

	for (size_t i = 0; i < e->n_tags; i++)
		n += strlen(e->tags[i]) + 1;
	if (!(s = at = malloc(n)))
		return NULL;
	*at = '\0';
	for (size_t i = 0; i < e->n_tags; i++)
		at += sprintf(at, "%s%s,", i ? "" : ",", e->tags[i]);
	return s;
}

static cJSON *group(const struct epset *set, const struct ep *e)
{
	cJSON *g = cJSON_CreateObject(), *targets, *labels;
	char number[24], *tags = joined_tags(e);

	targets = cJSON_AddArrayToObject(g, "targets");
	cJSON_AddItemToArray(targets, cJSON_CreateString(e->address));
	labels = cJSON_AddObjectToObject(g, "labels");
	cJSON_AddStringToObject(labels, "service", set->service);
	cJSON_AddStringToObject(labels, META_PREFIX "service", set->service);
	cJSON_AddStringToObject(labels, META_PREFIX "instance", e->instance);
	cJSON_AddStringToObject(labels, META_PREFIX "node", e->node);
	cJSON_AddStringToObject(labels, META_PREFIX "address", e->address);
	cJSON_AddStringToObject(labels, META_PREFIX "host", e->host);
	snprintf(number, sizeof(number), "%u", e->port);
	cJSON_AddStringToObject(labels, META_PREFIX "port", number);
	snprintf(number, sizeof(number), "%u", e->weight);
	cJSON_AddStringToObject(labels, META_PREFIX "weight", number);
	cJSON_AddStringToObject(labels, META_PREFIX "tags", tags ? tags : "");
	free(tags);
	add_meta(labels, e);
	return g;
}

/* The answer's text, or NULL when memory ran out. */
static char *answer(struct epboard *board, const struct sd_filter *f)
{
	struct epset **sets;
	long n = epboard_all(board, &sets);
	cJSON *list = n >= 0 ? cJSON_CreateArray() : NULL;
	char *text = NULL;

	for (long i = 0; i < n; i++) {
		const struct epset *set = sets[i];

		for (size_t k = 0;
		     list && wanted(f, set->service) && k < set->n; k++)
			if (set->ep[k].state == PROTO_STATE_READY)
				cJSON_AddItemToArray(list,
						     group(set, &set->ep[k]));
		epset_put(sets[i]);
	}
	free(sets);
	if (list)
		text = cJSON_PrintUnformatted(list);
	cJSON_Delete(list);
	return text;
}

enum MHD_Result api_route_sd(struct api *a, struct MHD_Connection *c,
			     const char *method)
{
	struct sd_filter *f;
	char *text;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return api_send_405(c, "GET, HEAD");
	if (!(f = calloc(1, sizeof(*f))))
		return MHD_NO;
	MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, take_arg, f);
	if (f->bad) {
		enum MHD_Result ret =
			api_send_error(c, 400, "bad_request", "%s", f->bad);

		free(f);
		return ret;
	}
	text = answer(hub_epboard(a->hub), f);
	free(f);
	if (!text)
		return api_send_error(c, 503, "unavailable",
				      "out of memory for the targets");
	/* api_send_json takes the text (as api_webhook does). */
	return api_send_json(c, 200, text);
}
