/*
 * endpoints: see endpoints.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "proto.h"

static const char *str_of(const cJSON *o, const char *key)
{
	const char *s =
		cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return s ? s : "";
}

static bool has_tag(const cJSON *agent, const char *tag)
{
	const cJSON *t;

	cJSON_ArrayForEach (t, cJSON_GetObjectItemCaseSensitive(agent, "tags"))
		if (cJSON_IsString(t) && strcmp(t->valuestring, tag) == 0)
			return true;
	return false;
}

bool endpoints_match(const cJSON *agent, const char *service,
		     const struct endpoints_filter *f)
{
	return strcmp(str_of(agent, "service"), service) == 0 &&
	       str_of(agent, "address")[0] &&
	       (f->any || strcmp(str_of(agent, "state"), "ready") == 0) &&
	       (!f->tag || !f->tag[0] || has_tag(agent, f->tag));
}

static void copy(cJSON *to, const cJSON *from, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, key);

	cJSON_AddItemToObject(to, key,
			      v ? cJSON_Duplicate(v, true) :
				  cJSON_CreateNull());
}

cJSON *endpoints_of_agent(const cJSON *agent)
{
	cJSON *e = cJSON_CreateObject();
	char host[PROTO_HOST_MAX + 1];
	unsigned port = 0;
	const char *addr = str_of(agent, "address");

	if (!e)
		return NULL;
	if (proto_split_address(addr, host, sizeof(host), &port) != 0)
		host[0] = '\0';
	copy(e, agent, "instance");
	cJSON_AddStringToObject(e, "address", addr);
	cJSON_AddStringToObject(e, "host", host);
	cJSON_AddNumberToObject(e, "port", port);
	copy(e, agent, "state");
	copy(e, agent, "weight");
	copy(e, agent, "load");
	copy(e, agent, "tags");
	copy(e, agent, "meta");
	copy(e, agent, "node");
	return e;
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
