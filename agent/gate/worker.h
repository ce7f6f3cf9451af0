/*
 * worker: one thread of the gate. It owns an event loop (loop.h), its own
 * listening socket (the workers share the port through SO_REUSEPORT, and
 * the kernel spreads connections over them), the client connections it
 * accepted (client.h) and its pool of connections to the app
 * (upstream.h): a request never changes threads, and nothing a request
 * touches is shared but the admission counts (admit.h).
 */
#ifndef GATE_WORKER_H
#define GATE_WORKER_H

#include <stddef.h>

#include "client.h"

struct worker;

/* Start a thread serving listen_fd (taken). NULL + err. */
struct worker *worker_start(struct gate_env *env, int listen_fd, char *err,
			    size_t errlen);
/* Stop accepting; idle connections close, the others after their answer. */
void worker_drain(struct worker *w);
/* Close everything and join the thread. */
void worker_stop(struct worker *w);
void worker_free(struct worker *w);

#endif
