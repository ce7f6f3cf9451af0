/*
 * endpoints: see endpoints.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "epboard.h"
#include "proto.h"

static const char *str_of(const cJSON *o, const char *key)
{
	const char *s =
		cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return s ? s : "";
}

static bool has_tag(const struct ep *e, const char *tag)
{
	for (size_t i = 0; i < e->n_tags; i++)
		if (strcmp(e->tags[i], tag) == 0)
			return true;
	return false;
}

cJSON *endpoints_json(const struct ep *e, bool full)
{
	cJSON *o = cJSON_CreateObject(), *tags;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "instance", e->instance);
	cJSON_AddStringToObject(o, "address", e->address);
	if (full) {
		cJSON_AddStringToObject(o, "host", e->host);
		cJSON_AddNumberToObject(o, "port", e->port);
	}
	cJSON_AddStringToObject(o, "state", proto_state_name(e->state));
	cJSON_AddNumberToObject(o, "weight", e->weight);
	if (e->load >= 0)
		cJSON_AddNumberToObject(o, "load",
					(double)e->load / EP_LOAD_SCALE);
	else if (full)
		cJSON_AddNullToObject(o, "load");
	if (full || e->n_tags) {
		tags = cJSON_AddArrayToObject(o, "tags");
		for (size_t i = 0; i < e->n_tags; i++)
			cJSON_AddItemToArray(tags,
					     cJSON_CreateString(e->tags[i]));
	}
	if (full)
		cJSON_AddRawToObject(o, "meta", e->meta);
	cJSON_AddStringToObject(o, "node", e->node);
	return o;
}

void endpoints_list(cJSON *list, const struct epset *set,
		    const struct endpoints_filter *f)
{
	for (size_t i = 0; i < set->n; i++) {
		const struct ep *e = &set->ep[i];

		if ((f->any || e->state == PROTO_STATE_READY) &&
		    (!f->tag || !f->tag[0] || has_tag(e, f->tag)))
			cJSON_AddItemToArray(list, endpoints_json(e, true));
	}
}

static int by_node_instance(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *)a,
		    *y = *(const cJSON *const *)b;
	int c = strcmp(str_of(x, "node"), str_of(y, "node"));

	return c ? c : strcmp(str_of(x, "instance"), str_of(y, "instance"));
}

cJSON *endpoints_answer(const char *service, uint64_t index, cJSON *list)
{
	cJSON *o = cJSON_CreateObject(), *sorted = cJSON_CreateArray();
	int n = cJSON_GetArraySize(list);
	cJSON **v = calloc(n ? (size_t)n : 1, sizeof(*v));
	char buf[24];

	if (!o || !sorted || !v) {
		cJSON_Delete(o);
		cJSON_Delete(sorted);
		cJSON_Delete(list);
		free(v);
		return NULL;
	}
	for (int i = n - 1; i >= 0; i--)
		v[i] = cJSON_DetachItemFromArray(list, i);
	qsort(v, (size_t)n, sizeof(*v), by_node_instance);
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(sorted, v[i]);
	free(v);
	cJSON_Delete(list);
	cJSON_AddStringToObject(o, "service", service);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)index);
	cJSON_AddRawToObject(o, "index", buf);
	cJSON_AddItemToObject(o, "endpoints", sorted);
	return o;
}
