/*
 * relay: the byte tunnel of an upgraded request (WebSocket). Once the app
 * answered 101 and the client has the 101, bytes move both ways through
 * the request's two rings until the app closes, or either side fails. The
 * relay lives inside the client connection that owns it; the owner passes
 * its own socket's events on and hears when the relay is over.
 */
#ifndef GATE_RELAY_H
#define GATE_RELAY_H

#include <stdbool.h>

#include "loop.h"
#include "ring.h"

struct relay {
	struct loop *loop;
	struct watch *client;   /* the owner's socket */
	struct watch upstream;  /* the app's socket, the relay's own */
	struct ring *up, *down; /* client to app, app to client */
	bool client_eof, upstream_eof, upstream_shut, running;
	long long moved_ms; /* a byte last moved, either way */
	const char *uri;    /* for the log */
	/* The relay is over: the owner closes its side (the relay's watch is
	 * retired already, so it is released first). */
	void (*over)(struct relay *r);
};

/* Take upstream_fd (the app's socket, after its 101) and start moving.
 * `over` may be called before this returns. */
void relay_start(struct relay *r, int upstream_fd);
/* An event on the client's socket. */
void relay_client_event(struct relay *r, uint32_t events);
/* End it (the worker stops): `over` is called. */
void relay_close(struct relay *r, const char *why);

#endif
