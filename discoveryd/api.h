/*
 * api: the HTTP API (docs/api.md) on libmicrohttpd, in its epoll thread pool.
 *
 * Handlers parse and validate on the pool's threads (body cap, JSON depth,
 * field checks), then hand a struct hub_req to the store (store_call) and
 * wait for its answer. They never touch lws or the registry themselves.
 */
#ifndef DISCOVERYD_API_H
#define DISCOVERYD_API_H

#include <stddef.h>

#include "dconf.h"
#include "hub.h"
#include "store.h"

struct api;

/* Bind conf->listen_http and start serving: calls go to store, are checked
 * against auth (neither owned). NULL with a message in err. */
struct api *api_start(const struct dconf *conf, struct hub *hub,
		      struct store *store, struct auth *auth, char *err,
		      size_t errlen);
/* The bound address, port 0 resolved. */
const char *api_listen_address(const struct api *a);
/* Change what can change at run time (the body cap). */
void api_reload(struct api *a, const struct dconf *conf);
/* Another module's counters, written into /metrics after the API's own
 * (the DNS server's): fn(arg, t) runs on the pool's threads until
 * api_stop returns. Once, any thread. */
struct metrics_text;
typedef void (*api_metrics_fn)(void *arg, struct metrics_text *t);
void api_add_metrics(struct api *a, api_metrics_fn fn, void *arg);
/* The webhooks GET, POST and DELETE .../webhooks work on (not owned; NULL:
 * none configured, the list is empty). Before requests come. */
struct webhook;
void api_set_webhooks(struct api *a, struct webhook *w);
/* Stop accepting, finish the requests in flight, free. */
void api_stop(struct api *a);

#endif
