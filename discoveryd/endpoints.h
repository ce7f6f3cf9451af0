/*
 * endpoints: the endpoints answer of the HTTP API (docs/api.md,
 * "Endpoints"), from the set the hub publishes (hub_ep.c).
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

struct ep;
struct epset;

/* e as JSON: the API's shape (full: host, port, meta, nulls), or the
 * agent link's (docs/protocol.md, "Endpoints"). NULL: no memory. */
cJSON *endpoints_json(const struct ep *e, bool full);
/* Append the endpoints of set f selects to list, in the API's shape. Any
 * thread (sets never change). */
void endpoints_list(cJSON *list, const struct epset *set,
		    const struct endpoints_filter *f);
/* The answer: {"service","index","endpoints":[...]} with list (taken)
 * sorted by node, then instance. */
cJSON *endpoints_answer(const char *service, uint64_t index, cJSON *list);

#endif
