/*
 * state: open or locked, and every answer the gate gives by itself.
 *
 * The gate's state is an immutable view, published through one atomic
 * pointer: whether the gate is open, the pass paths, and ready-made
 * answers (bytes) for the locked answers (HTML loading page and
 * JSON), /.well-known/discovery-gate and its /check. A new view is built
 * only when something changes (a readiness flag, the link, a SIGHUP), on
 * the thread that saw the change; a request loads the pointer once and
 * decides with that view, so it is answered wholly locked or wholly
 * proxied, and a locked answer costs no allocation and no formatting.
 *
 * A replaced view is freed only after a grace period (VIEW_GRACE_MS) and at
 * shutdown: a request thread holds the pointer for the few microseconds
 * between loading it and sending (a sender that cannot send an answer at
 * once copies what is left).
 */
#ifndef GATE_STATE_H
#define GATE_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include <discovery/agent.h>

#include "gconf.h"

/* An answer the gate gives itself, ready to send: the status line and
 * headers up to Content-Length (the sender adds Date, Connection and the
 * blank line), then the body. */
struct answer {
	char *head;
	size_t head_len;
	char *body;
	size_t body_len;
	unsigned status;
};

struct gate_view {
	bool open;
	bool latched;           /* latch held it open */
	unsigned locked_status; /* 423 or 503 */
	size_t n_pass;
	char **pass;               /* path prefixes always proxied */
	struct answer locked_html; /* the loading page */
	struct answer locked_json; /* {"error":"locked",...} */
	struct answer state_json;  /* /.well-known/discovery-gate */
	struct answer check;       /* 204 open, 403 locked */
	/* private */
	struct gate_view *retired_next;
	long long retired_at_ms;
};

struct gate_state;

/* A state for agent a (not started yet) with c's policy; NULL + err. */
struct gate_state *gstate_new(agent_t *a, const struct gconf *c, char *err,
			      size_t errlen);

/* Rebuild the view from the agent's flags (any thread; serialized inside). */
void gstate_update(struct gate_state *s, const char *why);

/*
 * Take the reloadable policy from c (locked_status, retry_after, pass,
 * latch, loading_page) and rebuild. 0, or -1 with err (nothing changed).
 */
int gstate_reload(struct gate_state *s, const struct gconf *c, char *err,
		  size_t errlen);

/* The current view; valid for VIEW_GRACE_MS after the next change. */
const struct gate_view *gstate_view(const struct gate_state *s);

/* True when the raw request target may pass the locked gate (path.h). */
bool gstate_passes(const struct gate_view *v, const char *target);

void gstate_free(struct gate_state *s);

#endif
