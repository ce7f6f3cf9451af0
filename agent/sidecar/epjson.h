/*
 * epjson: a watched service's endpoints (agent_endpoints) as the JSON the
 * daemon's API answers (docs/api.md, "Endpoints"), as far as an agent
 * knows them: {"service","index","endpoints":[{instance,address,host,port,
 * state,weight,load,tags,node}...]}. The daemon's `meta` does not travel
 * to watchers, so it is not here. The on_endpoints hook's stdin and
 * GET /endpoints/SERVICE are both made here, so the two never differ.
 */
#ifndef SIDECAR_EPJSON_H
#define SIDECAR_EPJSON_H

#include <stdbool.h>

#include <discovery/agent.h>

/* Which endpoints a document keeps. */
struct epjson_filter {
	bool any;        /* every state; else only ready ones */
	const char *tag; /* only those tagged so; NULL: any */
};

/* The document for set, filtered (NULL: every endpoint): malloc'd, NUL
 * terminated, the caller's to free(); NULL when memory runs out. */
char *epjson_build(const struct agent_endpoints *set,
		   const struct epjson_filter *filter);

#endif
