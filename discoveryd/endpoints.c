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
