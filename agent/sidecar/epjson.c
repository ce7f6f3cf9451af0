/*
 * epjson: endpoints as JSON (see epjson.h), built with cJSON. A set is
 * immutable (libagent's), so building from it needs no lock; a thousand
 * endpoints make about 150 KB.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "epjson.h"

static const char *state_name(enum agent_endpoint_state s)
{
	switch (s) {
	case AGENT_ENDPOINT_READY: return "ready";
	case AGENT_ENDPOINT_DRAINING: return "draining";
	default: return "notready";
	}
}

/*
 * host and port of a host:port that libagent already checked: the port
 * after the last colon, the host before it without an IPv6 literal's
 * brackets.
 */
static void add_host_port(cJSON *o, const char *address)
{
	const char *colon = strrchr(address, ':');
	size_t len = colon ? (size_t)(colon - address) : strlen(address);
	const char *host = address;
	char buf[300];

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		host++;
		len -= 2;
	}
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, host, len);
	buf[len] = '\0';
	cJSON_AddStringToObject(o, "host", buf);
	cJSON_AddNumberToObject(o, "port", colon ? atoi(colon + 1) : 0);
}

static bool has_tag(const struct agent_endpoint *e, const char *tag)
{
	for (size_t i = 0; i < e->n_tags; i++)
		if (!strcmp(e->tags[i], tag))
			return true;
	return false;
}

static bool keeps(const struct epjson_filter *f, const struct agent_endpoint *e)
{
	if (!f)
		return true;
	if (!f->any && e->state != AGENT_ENDPOINT_READY)
		return false;
	return !f->tag || has_tag(e, f->tag);
}

static cJSON *endpoint(const struct agent_endpoint *e)
{
	cJSON *o = cJSON_CreateObject(), *tags;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "instance", e->instance);
	cJSON_AddStringToObject(o, "address", e->address);
	add_host_port(o, e->address);
	cJSON_AddStringToObject(o, "state", state_name(e->state));
	cJSON_AddNumberToObject(o, "weight", e->weight);
	if (e->load < 0)
		cJSON_AddNullToObject(o, "load");
	else
		cJSON_AddNumberToObject(o, "load", e->load);
	tags = cJSON_AddArrayToObject(o, "tags");
	for (size_t i = 0; tags && i < e->n_tags; i++)
		cJSON_AddItemToArray(tags, cJSON_CreateString(e->tags[i]));
	cJSON_AddStringToObject(o, "node", e->node);
	return o;
}

char *epjson_build(const struct agent_endpoints *set,
		   const struct epjson_filter *filter)
{
	cJSON *root = cJSON_CreateObject(), *list;
	char *text, *copy, index[24];

	if (!root)
		return NULL;
	cJSON_AddStringToObject(root, "service", set->service);
	/* Exact, as the daemon writes it (a double would round past 2^53). */
	snprintf(index, sizeof(index), "%llu", (unsigned long long)set->index);
	cJSON_AddRawToObject(root, "index", index);
	list = cJSON_AddArrayToObject(root, "endpoints");
	for (size_t i = 0; list && i < set->n; i++) {
		cJSON *o;

		if (!keeps(filter, &set->ep[i]))
			continue;
		if (!(o = endpoint(&set->ep[i]))) {
			list = NULL;
			break;
		}
		cJSON_AddItemToArray(list, o);
	}
	text = list ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	/* cJSON's allocator need not be ours: hand over a malloc'd copy. */
	copy = text ? strdup(text) : NULL;
	cJSON_free(text);
	return copy;
}
