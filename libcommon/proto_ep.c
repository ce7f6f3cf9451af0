/*
 * proto_ep: one endpoint as the agent link carries it (proto.h,
 * proto_check_endpoint; docs/protocol.md, "Endpoints"). An agent trusts
 * what it picks from: every field is checked as the daemon checks a hello.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return PROTO_E_INVALID;
}

static const char *string_of(const cJSON *e, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, key));
}

static bool given(const cJSON *v)
{
	return v && !cJSON_IsNull(v);
}

static int check_tags(const cJSON *tags, char *err, size_t errlen)
{
	const cJSON *t;
	int n = 0;

	if (!given(tags))
		return 0;
	if (!cJSON_IsArray(tags))
		return bad(err, errlen, "an endpoint's tags must be an array");
	cJSON_ArrayForEach (t, tags)
		if (++n > PROTO_TAGS_MAX || !cJSON_IsString(t) ||
		    !proto_valid_name(t->valuestring))
			return bad(err, errlen,
				   "an endpoint's tags must be at most %d "
				   "names",
				   PROTO_TAGS_MAX);
	return 0;
}

int proto_check_endpoint(const cJSON *e, char *err, size_t errlen)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(e, "weight");
	const cJSON *load = cJSON_GetObjectItemCaseSensitive(e, "load");
	const cJSON *node = cJSON_GetObjectItemCaseSensitive(e, "node");
	const char *s;

	if (!cJSON_IsObject(e))
		return bad(err, errlen, "an endpoint must be an object");
	if (!proto_valid_instance(string_of(e, "instance")))
		return bad(err, errlen, "an endpoint's instance is not valid");
	if (!(s = string_of(e, "address")) || !proto_valid_address(s))
		return bad(err, errlen,
			   "an endpoint's address must be "
			   "host:port");
	if (!(s = string_of(e, "state")) || proto_state_parse(s) < 0)
		return bad(err, errlen,
			   "an endpoint's state must be ready, "
			   "draining or notready");
	if (given(w) &&
	    (!cJSON_IsNumber(w) || !(w->valuedouble >= PROTO_WEIGHT_MIN) ||
	     w->valuedouble > PROTO_WEIGHT_MAX ||
	     w->valuedouble != (double)(int)w->valuedouble))
		return bad(err, errlen,
			   "an endpoint's weight must be an integer from %d "
			   "to %d",
			   PROTO_WEIGHT_MIN, PROTO_WEIGHT_MAX);
	if (given(load) &&
	    (!cJSON_IsNumber(load) || !(load->valuedouble >= 0.0) ||
	     load->valuedouble > 1.0))
		return bad(err, errlen,
			   "an endpoint's load must be a number from 0 to 1");
	if (given(node) && (!cJSON_IsString(node) ||
			    strlen(node->valuestring) > PROTO_INSTANCE_MAX))
		return bad(err, errlen, "an endpoint's node is not valid");
	return check_tags(cJSON_GetObjectItemCaseSensitive(e, "tags"), err,
			  errlen);
}
