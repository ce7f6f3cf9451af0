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

/* An agent object of an older node has ready alone. */
static const char *state_of(const cJSON *agent)
{
	const char *s = str_of(agent, "state");

	if (s[0])
		return s;
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(agent, "ready")) ?
		       "ready" :
		       "notready";
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
	       proto_valid_address(str_of(agent, "address")) &&
	       (f->any || strcmp(state_of(agent), "ready") == 0) &&
	       (!f->tag || !f->tag[0] || has_tag(agent, f->tag));
}

/* from[key], or (an older node's agent lacks it) def. */
static void copy(cJSON *to, const cJSON *from, const char *key,
		 cJSON *(*def)(void))
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, key);

	cJSON_AddItemToObject(to, key, v ? cJSON_Duplicate(v, true) : def());
}

static cJSON *weight_default(void)
{
	return cJSON_CreateNumber(PROTO_WEIGHT_DEFAULT);
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
	copy(e, agent, "instance", cJSON_CreateNull);
	cJSON_AddStringToObject(e, "address", addr);
	cJSON_AddStringToObject(e, "host", host);
	cJSON_AddNumberToObject(e, "port", port);
	cJSON_AddStringToObject(e, "state", state_of(agent));
	copy(e, agent, "weight", weight_default);
	copy(e, agent, "load", cJSON_CreateNull);
	copy(e, agent, "tags", cJSON_CreateArray);
	copy(e, agent, "meta", cJSON_CreateObject);
	copy(e, agent, "node", cJSON_CreateNull);
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
