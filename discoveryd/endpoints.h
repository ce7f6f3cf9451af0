/*
 * endpoints: a service's instances as endpoints (docs/api.md, "Endpoints"),
 * built from agent objects (hub_agent_json's shape, this node's or another
 * node's from Redis), so that both stores answer in one shape.
 */
#ifndef DISCOVERYD_ENDPOINTS_H
#define DISCOVERYD_ENDPOINTS_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

/* Which endpoints a caller wants: ready ones (any = false) or all, with a
 * tag or not ("" = any). */
struct endpoints_filter {
	bool any;
	const char *tag;
};

/* Is agent one of service's endpoints that f selects? An agent without an
 * address is not an endpoint. */
bool endpoints_match(const cJSON *agent, const char *service,
		     const struct endpoints_filter *f);
/* agent as an endpoint (a new object). NULL when out of memory. */
cJSON *endpoints_of_agent(const cJSON *agent);
/* The answer: {"service","index","endpoints":[...]} with list (taken)
 * sorted by node, then instance. */
cJSON *endpoints_answer(const char *service, uint64_t index, cJSON *list);

#endif
