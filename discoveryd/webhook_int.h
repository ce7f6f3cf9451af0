/*
 * webhook_int: what webhook.c (the thread, the endpoints' walk, cursors),
 * webhook_cmd.c (the API's commands, run on the thread), webhook_http.c
 * (one attempt on libcurl: headers, signature, the answer's
 * classification) and webhook_view.c (the list and metrics) share.
 */
#ifndef DISCOVERYD_WEBHOOK_INT_H
#define DISCOVERYD_WEBHOOK_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "dconf.h"
#include "event.h"
#include "webhook.h"
#include "webhook_cursor.h"

/* A response body is read up to this much and dropped: its status is all
 * that counts. */
#define WEBHOOK_BODY_MAX (64u << 10)
/* A test notice (POST .../test) waits at most this long for its answer,
 * whatever the endpoint's timeout: its caller holds an HTTP thread. */
#define WEBHOOK_TEST_TIMEOUT_MS 10000
#define WEBHOOK_ID_MAX          (PROTO_EPOCH_MAX + 32)

/*
 * One event as the webhook thread keeps it: a copy of its frame (the hub's
 * reference counts are its own). A mark (no body) says where the log
 * stands: its epoch and last seq.
 */
struct wh_event {
	struct wh_event *next; /* in the inbox */
	unsigned refs;         /* webhook thread, once out of the inbox */
	bool mark;
	bool reset; /* a reset notice made for one endpoint */
	enum event_kind kind;
	uint64_t seq;
	int64_t wall_ms; /* when the event was made */
	char epoch[PROTO_EPOCH_MAX + 1];
	char service[PROTO_NAME_MAX + 1];
	size_t len;
	char body[];
};

/* How one attempt ended, for the counters. */
enum wh_class {
	WH_2XX = 0,
	WH_3XX,
	WH_4XX,
	WH_410,
	WH_429,
	WH_5XX,
	WH_TIMEOUT,
	WH_ERROR, /* connection, TLS, a cut answer */
	WH_CLASSES
};

enum wh_slot_state { SLOT_WAITING = 0, SLOT_SENDING, SLOT_DONE };

/* One event in an endpoint's window: waiting for its time, on the wire,
 * or acknowledged (and waiting for those before it). */
struct wh_slot {
	struct wh_event *ev; /* a reference */
	enum wh_slot_state state;
	unsigned attempts;
	int64_t first_ms; /* monotonic: its first attempt */
	int64_t due_ms;   /* monotonic: its next one */
	char id[WEBHOOK_ID_MAX];
	CURL *easy; /* while SENDING */
	struct curl_slist *headers;
	size_t read; /* answer bytes read */
	bool capped; /* past WEBHOOK_BODY_MAX */
	struct wh_endpoint *ep;
};

#define WH_HOLDER_MAX 129 /* a node name (cluster.node) and its NUL */

/* What the API shows of an endpoint: written under webhook.mu. */
struct wh_view {
	char epoch[PROTO_EPOCH_MAX + 1];
	uint64_t cursor; /* durable */
	uint64_t lag_events;
	int64_t lag_ms;
	int last_status; /* HTTP status; 0: none, or no answer */
	char last_error[160];
	int64_t last_attempt_wall_ms;
	uint64_t failures; /* consecutive */
	uint64_t by_class[WH_CLASSES];
	uint64_t delivered, retries, resets, cursor_failures;
	bool disabled;
	bool standby; /* another node delivers it (cluster mode) */
	char holder[WH_HOLDER_MAX]; /* that node, when known; else "" */
	char disabled_reason[160];
};

struct wh_endpoint {
	char name[PROTO_NAME_MAX + 1];
	struct dconf_webhook conf; /* url, ca_file copied; lists dropped */
	char **services;
	size_t n_services;
	struct webhook_cursor cursor;
	char epoch[PROTO_EPOCH_MAX + 1]; /* of scanned */
	uint64_t scanned;       /* every event up to here is in the window or
				   not for this endpoint */
	struct wh_slot *window; /* max_in_flight, a ring from win_head:
				   a slot never moves while on the wire */
	size_t win_head, n_window;
	int64_t saved_ms; /* the cursor's last lazy save */
	uint64_t rng;
	bool disabled, removed;
	bool runtime; /* defined through the API (webhook_def.c) */
	/* Its stored definition no longer passes (a secret file gone bad
	 * since): loaded to be seen and fixed, never delivered until a PUT
	 * or a SIGHUP reads it whole again. */
	bool broken;
	bool standby;        /* backend: another node holds the lease */
	int64_t lease_ms;    /* backend: when to call lease again */
	int64_t held_ms;     /* backend: when the lease last said ours was
				sent; it is sure ours until 2 renewals on */
	struct wh_view view; /* the thread's copy; published under mu */
	struct wh_slot test; /* POST .../test: one at a time, off the window */
	struct wh_cmd *test_cmd; /* waiting for it; NULL: none runs */
};

struct wh_cmd {
	enum webhook_op op;
	const char *name;
	uint64_t from;
	/* WEBHOOK_PUT (webhook_put): the definition, checked, its text as
	 * stored, and whether it starts from the current seq. */
	const struct dconf_webhook *def;
	const char *json;
	bool fresh;
	const struct dconf *conf; /* WEBHOOK_RELOAD */
	int status;
	char *msg;
	size_t msglen;
	bool deferred; /* answered when its request ends (a test) */
	bool done;
	struct wh_cmd *next;
};

struct webhook {
	const struct webhook_backend *backend; /* NULL: the files */
	/* DCONF_WEBHOOKS_MAX slots, allocated once: slots and transfers
	 * point at their endpoint, which never moves. n_eps grows under mu
	 * (a PUT); a deleted endpoint's slot is taken again by a PUT. */
	struct wh_endpoint *eps;
	size_t n_eps;
	char *state_dir;
	struct conf_strlist config_names; /* webhooks:'s, deleted ones too */
	struct cJSON *defs; /* the API's definitions: name -> entry (thread) */
	struct journal defs_journal; /* state_dir/webhooks-api (thread) */
	long long defs_rev;          /* cluster: the revision taken, -1 none */
	int64_t defs_sync_ms;        /* cluster: when to look again */
	/* Any endpoint at all: while none is, the hub's events are not
	 * copied, only the last seq noted (webhook_offer). */
	atomic_bool active;
	atomic_uint_least64_t idle_seq;
	CURLM *multi;
	pthread_t thread;
	bool started;
	atomic_bool stop;

	/* The hub's side: a stack of events, pushed with a CAS. */
	_Atomic(struct wh_event *) inbox;
	atomic_size_t inbox_n;
	atomic_uint_least64_t inbox_dropped;

	/* The thread's: the retained events, oldest first, seqs in a row. */
	struct wh_event **ring;
	size_t cap, head, count;
	char epoch[PROTO_EPOCH_MAX + 1];
	uint64_t latest; /* the log's last seq */
	bool placed;     /* new endpoints were given their start */
	/* The first position of the log seen with an epoch (a cluster
	 * node's sync): where an endpoint new to the cluster begins. */
	char start_epoch[PROTO_EPOCH_MAX + 1];
	uint64_t start_seq;

	pthread_mutex_t mu; /* views, commands, running */
	pthread_cond_t cv;
	struct wh_cmd *cmds;
	bool running;
	struct wh_view *views; /* published, one per endpoint */
	bool *removed;         /* published */
};

/* webhook.c: the thread's own, shared with webhook_cmd.c. */
struct wh_event *wh_event_new(size_t len); /* refs 1, len bytes of body */
void wh_event_unref(struct wh_event *e);
uint64_t wh_ring_oldest(const struct webhook *w); /* latest + 1: none */
void wh_window_clear(struct webhook *w, struct wh_endpoint *ep);
void wh_save_cursor(struct webhook *w, struct wh_endpoint *ep, uint64_t seq,
		    int64_t now);
/* A replay's: the cursor may go back in its epoch. */
void wh_rewind_cursor(struct webhook *w, struct wh_endpoint *ep, uint64_t seq,
		      int64_t now);
void wh_store_disabled(struct webhook *w, struct wh_endpoint *ep,
		       const char *why); /* "" = enabled */
void wh_publish(struct webhook *w);      /* the views, under mu */

/* The endpoint's own copy of def (url, ca_file, services, a window of
 * def->max_in_flight): 0, or -1 out of memory with ep unchanged. Its
 * window must be empty. */
int wh_endpoint_set_conf(struct wh_endpoint *ep,
			 const struct dconf_webhook *def);
/* Open ep (zeroed) as name with def: its copy, its cursor file (files)
 * in state_dir. 0, or -1 with a message. */
int wh_endpoint_init(struct wh_endpoint *ep, const char *name,
		     const struct dconf_webhook *def, const char *state_dir,
		     bool files, char *err, size_t errlen);
void wh_endpoint_release(struct webhook *w, struct wh_endpoint *ep);
/* Copy events again if any endpoint is left, or stop (webhook_offer). */
void wh_update_active(struct webhook *w);
/* Copy them from now on, latest brought to where the log stands: what a
 * new endpoint's start is taken from. */
void wh_activate(struct webhook *w);

/* webhook_def.c: the API's definitions, state_dir/webhooks-api. */
/* Read them and open their endpoints after the config's (webhook_new).
 * 0, or -1 with a message. */
int wh_defs_load(struct webhook *w, const struct dconf *conf, char *err,
		 size_t errlen);
void wh_defs_put(struct webhook *w, struct wh_cmd *c, int64_t now);
/* WEBHOOK_RELOAD: take the secrets anew (webhook_reload_secrets). */
void wh_defs_reload_secrets(struct webhook *w, const struct dconf *conf);
/* Cluster mode: take the definitions the other nodes changed (every
 * renewal); drop ep, deleted by another node (its keys are gone). */
void wh_defs_sync(struct webhook *w, int64_t now);
void wh_defs_gone(struct webhook *w, struct wh_endpoint *ep);
/* Forget name's definition (its endpoint was deleted): 0, or -1. */
int wh_defs_remove(struct webhook *w, const char *name);

/* webhook_cmd.c: the queued commands, at the top of each turn; a test's
 * end (rc), or its drop (status != 0: the answer). */
void wh_run_cmds(struct webhook *w, int64_t now);
void wh_test_done(struct webhook *w, struct wh_endpoint *ep, CURLcode rc,
		  int status);

/* webhook_http.c */
struct wh_result {
	enum wh_class cls;
	int status;             /* 0: no answer */
	int64_t retry_after_ms; /* Retry-After, 0 = none */
	char error[160];
};
/* Put s on the wire (state SENDING). 0, or -1 (no memory: try later). */
int wh_http_start(struct webhook *w, struct wh_slot *s);
/* The transfer of s ended with rc: classify it, free its handle. */
void wh_http_finish(struct webhook *w, struct wh_slot *s, CURLcode rc,
		    struct wh_result *r);
/* Take s off the wire, if it is on it. */
void wh_http_abort(struct webhook *w, struct wh_slot *s);
const char *wh_class_name(enum wh_class c);

#endif
