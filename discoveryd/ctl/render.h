/*
 * render: turns the API's JSON answers into what the user reads.
 *
 * Each kind of answer (service objects, agents, write acknowledgements,
 * events) has a column list: header, JSON field, and how to show the value.
 * Tables go through table.c; --json output is the server's own body,
 * compacted to one line without re-encoding it, so numbers such as a 64-bit
 * seq reach the script exactly as the server wrote them.
 */
#ifndef DISCOVERYCTL_RENDER_H
#define DISCOVERYCTL_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <cJSON.h>

enum render_kind {
	RENDER_SERVICES,       /* {"services":[service...]} */
	RENDER_SERVICE,        /* one service object */
	RENDER_AGENTS,         /* {"agents":[agent...]} */
	RENDER_ENDPOINTS,      /* {"service","index","endpoints":[...]} */
	RENDER_ACK,            /* {"seq":N,"delivered":K} */
	RENDER_CACHEREADY,     /* {"seq","service","ready","delivered"} */
	RENDER_EVENTS,         /* {"events":[event...]} or [event...] */
	RENDER_DRAIN,          /* {"node","draining","links"} */
	RENDER_WEBHOOKS,       /* {"webhooks":[webhook...]} */
	RENDER_WEBHOOK_ACTION, /* {"webhook","result"} */
};

/*
 * Print root (the parsed body) as a table of kind to out, coloured when
 * color is true. Returns 0, or -1 when root does not have the expected shape
 * (nothing printed then).
 */
int render_table(enum render_kind kind, const cJSON *root, FILE *out,
		 bool color);

/* Print body on one line: whitespace outside JSON strings removed. */
void render_json_line(const char *body, size_t len, FILE *out);

/*
 * Print the API's error answer to stderr as
 *   discoveryctl: <message> (HTTP <status> <error>)
 * falling back to the body's first line when it is not an API error object.
 */
void render_error(long status, const char *body, size_t len);

#endif
