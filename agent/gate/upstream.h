/*
 * upstream: the workers that talk to the app, one thread and one libcurl
 * multi handle each (so each keeps its own pool of keep-alive upstream
 * connections). Client threads hand requests over with worker_post; the
 * worker wakes with curl_multi_wakeup. Every curl call on a transfer, and
 * the WebSocket byte relay of upgraded requests, runs on its worker.
 */
#ifndef GATE_UPSTREAM_H
#define GATE_UPSTREAM_H

#include "proxy.h"

struct worker *worker_start(struct gate_server *s, int index, char *err,
			    size_t errlen);

/*
 * Ask w for ops on r (OP_* bits). 0, or -1 once w is stopping (then the
 * request is not taken: the caller answers it).
 */
int worker_post(struct worker *w, struct preq *r, unsigned ops);

/* Fail every transfer and relay and stop the thread; from then on
 * worker_post refuses. */
void worker_stop(struct worker *w);
/* Free a stopped worker, once no thread can post to it. */
void worker_free(struct worker *w);

/* Curl callbacks for a request's easy handle (set up by proxy.c). */
size_t upstream_on_header(char *p, size_t size, size_t n, void *ud);
size_t upstream_on_write(char *p, size_t size, size_t n, void *ud);
size_t upstream_on_read(char *p, size_t size, size_t n, void *ud);
curl_socket_t upstream_open_socket(void *ud, curlsocktype purpose,
				   struct curl_sockaddr *addr);
int upstream_close_socket(void *ud, curl_socket_t fd);

#endif
