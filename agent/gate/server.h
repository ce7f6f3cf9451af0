/*
 * server: the gate's listener and its workers (worker.h): one listening
 * socket per worker on the same port (SO_REUSEPORT), the admission counts
 * they share, and the process's start, drain and stop.
 */
#ifndef GATE_SERVER_H
#define GATE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "gconf.h"
#include "state.h"

struct worker;

struct gate_server {
	struct gate_env env;
	struct worker **workers;
	size_t n_workers;
	uint16_t port; /* the bound port */
};

/* Bind, start the workers; logs msg=listening. NULL + err. */
struct gate_server *server_start(const struct gconf *c, struct gate_state *st,
				 char *err, size_t errlen);

/* Stop accepting; wait up to timeout_ms for the requests in flight.
 * Returns how many were still running. */
int server_drain(struct gate_server *s, long long timeout_ms);

/* Close what is left, stop the workers, free. */
void server_stop(struct gate_server *s);

#endif
