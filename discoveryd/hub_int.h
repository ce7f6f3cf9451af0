/*
 * hub_int: what the hub's files share: hub.c (thread, queue, timers),
 * fanout.c (an event to links and streams), link*.c (one agent link:
 * frames in, frames out, close codes), hub_req.c (the calls the hub
 * answers from this node's view). The backends (local.c, cluster_mirror.c)
 * include it too: they change the registry and the log on the hub thread
 * and hand events to hub_deliver. The hub includes no backend's header.
 */
#ifndef DISCOVERYD_HUB_INT_H
#define DISCOVERYD_HUB_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "backoff.h"
#include "clock.h"
#include "epboard.h"
#include "evlog.h"
#include "htab.h"
#include "hub.h"
#include "metrics.h"
#include "store.h"

enum link_state {
	LINK_OPEN = 1, /* upgraded, waiting for hello */
	LINK_ACTIVE,   /* hello accepted: an instance */
	LINK_CLOSING,  /* a close is on its way; deliver nothing more */
};

/* Why a link ended, for discovery_links_closed_total{reason}. */
enum close_kind {
	CLOSE_GONE = 0, /* the connection dropped, no close frame */
	CLOSE_PEER,     /* the agent closed it */
	CLOSE_HEARTBEAT,
	CLOSE_HELLO_TIMEOUT,
	CLOSE_REPLACED,
	CLOSE_POLICY,
	CLOSE_INVALID,
	CLOSE_TOO_BIG,
	CLOSE_SEND_QUEUE,
	CLOSE_LIMIT,
	CLOSE_STOPPING,
	CLOSE_INTERNAL,
	CLOSE_WRITE_FAILED,
	CLOSE_TOKEN, /* its token expired, or its secret went */
	CLOSE_DRAIN, /* the node is being drained */
	CLOSE_KINDS
};

/* The hub's counters: written by the hub thread only. */
struct hub_stats {
	uint64_t links_opened;
	uint64_t closed[CLOSE_KINDS];
	uint64_t events[EVENT_COMMAND + 1]; /* by enum event_kind */
	struct histogram delivery;          /* trigger to socket, per link */
};

/* A source address as text: at most 45 characters (inet_ntop). */
#define LINK_PEER_MAX 48

struct peer; /* peers.c */

struct link_conn; /* link_admit.c */

/* Why the listener refused a connection, or cut it before its upgrade. */
enum admit_refusal {
	REFUSED_RATE = 0,    /* limits.accept_rate */
	REFUSED_RATE_PER_IP, /* limits.accept_share_per_ip */
	REFUSED_PER_IP,      /* limits.max_agents_per_ip */
	REFUSED_HANDSHAKE,   /* no upgrade within hello_timeout */
	REFUSED_FULL,        /* the listener's descriptors (max_conns) */
	REFUSED_KINDS
};

/* Refusals of one kind: counted always, logged in summary. */
struct admit_log {
	uint64_t total;
	uint64_t unlogged; /* since the last line */
	int64_t logged_ms; /* 0 = never */
	char last_peer[LINK_PEER_MAX];
};

/*
 * One agent link; the lws per-session data (lws allocates and frees it).
 * Every idle link pays for each byte here, so only what every link needs is
 * inline, ordered so that it packs without holes (docs/design.md, "The
 * link's footprint"). What its hello named is one allocation (deps), its
 * token another (auth on), and what few links ever have (meta, watches, a
 * message arriving in pieces, a parked hello, a close reason) a third, made
 * when the first of them comes (link_aside). All go with the link
 * (on_closed in link.c); the send queue once an event has had to wait,
 * until a tick finds it empty.
 */
struct link {
	struct lws *wsi;
	struct hub *hub;
	struct link_queue *queue; /* NULL until an event has to wait */
	struct service *svc;
	struct service **deps;          /* NULL until the hello; then its
					   dependencies (NULL once let go) and,
					   in the same allocation, what else it
					   named (link_instance) */
	const char *peer;               /* the source address: the text of its
					   peers.c record, held while the link
					   lives (peer_of_addr) */
	struct hnode index_node;        /* in hub->index */
	struct link *ep_prev, *ep_next; /* its service's endpoints */
	int64_t connected_ms;           /* monotonic */
	int64_t connected_wall_ms;      /* for the agents list */
	int64_t last_rx_ms;             /* any frame, pongs included */
	int64_t last_pong_wall_ms;      /* 0 = none yet */
	int64_t last_ping_ms;
	struct link_token *token; /* auth on: from its token */
	struct link_aside *aside; /* NULL until it has one of those */
	uint32_t index;           /* in hub->links */
	uint16_t weight;          /* 1-1000, from the hello */
	uint16_t load;       /* as it last reported, in LINK_LOAD_SCALE steps
				of 1; LINK_LOAD_NONE: never */
	uint16_t close_code; /* != 0: close with it when writable */
	uint8_t state;       /* enum link_state */
	uint8_t status;      /* enum proto_state, as it last reported */
	uint8_t close_kind;  /* enum close_kind, set by the first close or
				kill (close_kind_set) */
	uint8_t n_deps;      /* in deps */
	uint8_t n_tags;      /* link_tags */
	bool close_kind_set : 1;
	bool ping_due : 1;
	bool ready : 1;       /* the instance's own report: READY */
	bool inherited : 1;   /* ready is its zombie's, until it reports
				 (link_set_status) */
	bool parked_once : 1; /* its hello waited already */
	bool indexed : 1;     /* in hub->index */
	bool ep_listed : 1;   /* in its endpoints: it gave an address */
	bool corked : 1;      /* in hub->corked_links */
};

/* From its token (auth on): one allocation with the claims' text. */
struct link_token {
	const char *svc; /* the service it is for; NULL = any */
	const char *sub; /* who it names, for the log; NULL = none */
	int64_t exp;     /* seconds since the epoch; 0 = none */
	unsigned secret; /* the id of the secret that signed it */
	char text[];     /* svc's text, then sub's */
};

/* What few links have; link_aside makes it. */
struct link_aside {
	cJSON *meta;         /* the hello's; NULL = none */
	struct watch *watch; /* the services whose endpoints it watches */
	struct link_rx *rx;  /* a message arriving in pieces */
	struct link_parked *parked; /* a hello waiting for this node's log to
				       read as far as the agent */
	char *close_reason;         /* with close_code; NULL = none */
	uint8_t n_watch;            /* in watch */
};

struct hub {
	/* Settings (hub thread; reload replaces them between services). */
	int64_t heartbeat_interval_ms;
	struct backoff ping_phase; /* spreads links' pings over the interval */
	int64_t heartbeat_timeout_ms;
	int64_t hello_timeout_ms;
	size_t max_agents;
	size_t max_agents_per_ip; /* 0 = no limit */
	size_t max_conns; /* listener connections open at once (fd_budget) */
	size_t n_conns;   /* open now: handshaking or links (peers.c) */
	size_t max_message;
	size_t send_queue;
	double accept_rate; /* tokens per second; 0 = no limit */
	double accept_burst;
	double accept_share; /* of both, one address's bucket */
	bool tls;            /* wss: refusals cannot be answered
				before the TLS handshake */
	char node[PROTO_INSTANCE_MAX + 1];

	struct auth *auth;
	unsigned auth_generation; /* of its secrets, as the tick saw */
	struct lws_context *ctx;
	struct lws_vhost *vhost;
	char listen_address[CONF_ADDR_TEXT];
	pthread_t thread;
	bool thread_started;

	/* Requests from other threads. */
	pthread_mutex_t mu; /* callers wait on their hub_req's cv under it */
	struct hub_req *req_head, *req_tail;
	bool accepting; /* under mu */
	atomic_bool stop;

	/* Hub-thread state. */
	struct registry registry;
	struct evlog log;
	bool holding;        /* a group commit is open (hub_hold_begin) */
	bool delivering;     /* its events are going out (hub_hold_end) */
	struct event **held; /* its events, in seq order, referenced */
	size_t n_held, cap_held;
	char **changes; /* its SSE change notes (service names), owned */
	size_t n_changes, cap_changes;
	bool corked;                /* hub_cork: links queue, write later */
	struct link **corked_links; /* those with a write waiting */
	size_t n_corked, cap_corked;
	struct link **links;
	size_t n_links, cap_links;
	size_t n_instances;                 /* links past hello */
	struct htab peers;                  /* struct peer by source address */
	struct peer *idle_head, *idle_tail; /* holding no connection */
	size_t n_idle;
	struct link_conn *pending_head, *pending_tail; /* not upgraded yet */
	struct admit_log refused[REFUSED_KINDS];
	struct htab index; /* links by service and instance id */
	lws_sorted_usec_list_t tick_sul;
	double accept_tokens; /* admission control's bucket */
	int64_t accept_refill_ms;
	struct hub_stats stats;
	struct sse *streams;  /* live SSE streams */
	uint64_t watchdog_us; /* systemd WatchdogSec; 0 = off */
	int64_t watchdog_sent_ms;
	int64_t status_sent_ms;
	bool stopping; /* shutdown under way */
	int64_t stop_deadline_ms;
	bool finished; /* leave the service loop */

	/* Drain (hub_drain.c). */
	atomic_int drain;          /* enum hub_drain_state; any thread */
	size_t drain_batch;        /* links per step (drain.batch) */
	int64_t drain_interval_ms; /* between steps; the agents' spread */
	int64_t drain_started_ms;
	size_t drain_closed;
	lws_sorted_usec_list_t drain_sul;

	/* Where the state lives (store.h); not owned. */
	struct store *store;
	hub_sink_fn *sink; /* hub_set_sink; NULL: none */
	void *sink_arg;
	size_t n_parked;          /* links whose hello waits for the log */
	bool announce_due;        /* hub_announce_all had no memory: again */
	uint64_t ep_clock;        /* ticks at each set published (ep_index) */
	struct epboard *board;    /* the endpoint sets, published */
	struct service *ep_dirty; /* services to flush (hub_ep.c) */
	int64_t ep_window_ms;     /* endpoints.coalesce */
	int64_t ep_flushed_ms;    /* the last flush began (monotonic) */
	bool ep_armed;            /* ep_sul is scheduled */
	lws_sorted_usec_list_t ep_sul;
};

/* hub_ep.c: s's endpoints on this node may have changed (a link came,
 * went or reported): flush it within the window. */
void hub_endpoints_moved(struct hub *h, struct service *s);
void hub_ep_init(struct hub *h);  /* before the first service */
void hub_ep_start(struct hub *h); /* on the hub thread, once lws runs */
void hub_ep_add(struct hub *h, struct link *l); /* past its hello */
void hub_ep_remove(struct hub *h, struct link *l);
int hub_ep_flush(struct hub *h, struct service *s);
void hub_ep_fresh(struct hub *h, struct service *s); /* before a read */
bool hub_ep_same(const struct ep *a, const struct ep *b);
/* The endpoints of service f selects, as of now, and their index. */
struct endpoints_filter;
cJSON *hub_ep_answer(struct hub *h, const char *service,
		     const struct endpoints_filter *f, uint64_t *index);

/* What l's hello named, kept just past its dependencies (l->deps): its
 * instance, address and tags, each NUL-terminated. Only once it has one. */
static inline const char *link_instance(const struct link *l)
{
	return (const char *)(l->deps + l->n_deps);
}

/* "" when the hello gave none. */
static inline const char *link_address(const struct link *l)
{
	const char *instance = link_instance(l);

	return instance + strlen(instance) + 1;
}

/* n_tags names, one after another. */
static inline const char *link_tags(const struct link *l)
{
	const char *address = link_address(l);

	return address + strlen(address) + 1;
}

static inline const cJSON *link_meta(const struct link *l)
{
	return l->aside ? l->aside->meta : NULL;
}

static inline size_t link_n_watch(const struct link *l)
{
	return l->aside ? l->aside->n_watch : 0;
}

/* link.c: l's aside, made if it has none; NULL without memory. */
struct link_aside *link_aside(struct link *l);

/* hub.c */
void hub_announce_all(struct hub *h);
/* The log was replaced (a cluster node's sync): the sink gets where it
 * stands and its retained events again, as at hub_set_sink. */
void hub_sink_resync(struct hub *h);
void hub_apply_settings(struct hub *h, const struct dconf *conf);
void hub_drain_requests(struct hub *h);

/* fanout.c: an event, once durable, to every link and stream it is for.
 * deliver counts it and returns how many links it went to. */
size_t hub_deliver(struct hub *h, struct event *ev);
/* Group commit (fanout.c): between these, journal appends are written
 * and delivered events held; end makes them durable with one fdatasync,
 * then delivers them in order (a failed fdatasync ends the process). */
void hub_hold_begin(struct hub *h);
void hub_hold_end(struct hub *h);
size_t hub_fanout(struct hub *h, struct event *ev);
void hub_sse_push(struct sse *s, const struct event *ev);
void hub_sse_event(struct hub *h, const struct event *ev);
void hub_sse_change(struct hub *h, const char *service);
void hub_sse_keepalive(struct hub *h, int64_t now_ms);

/*
 * peers.c: per source address, its connections and accept bucket. A record
 * from peers_get lives while held (peers_hold, peers_put) and may go some
 * time after; NULL when out of memory.
 */
struct peer *peers_get(struct hub *h, const char *addr);
void peers_hold(struct hub *h, struct peer *p);
void peers_put(struct hub *h, struct peer *p);
unsigned peers_conns(const struct peer *p);
const char *peers_addr(const struct peer *p);
struct peer *peer_of_addr(const char *addr); /* from peers_addr */
bool peers_admit(struct hub *h, struct peer *p, double rate, double burst,
		 int64_t now_ms);
void peers_release(struct hub *h);

/* link_admit.c: the listener's door (LWS_CALLBACK_* of the same names) */
int link_admit_filter(struct hub *h,
		      const struct lws_filter_network_conn_args *f);
int link_admit_adopt(struct hub *h, struct lws *wsi);
/* The upgraded connection's address record, held for the link; NULL if
 * it was never counted. */
struct peer *link_admit_upgraded(struct hub *h, struct lws *wsi);
void link_admit_destroyed(struct hub *h, struct lws *wsi);
void link_admit_tick(struct hub *h, int64_t now);
const char *link_admit_refusal_name(enum admit_refusal why);

/* link_watch.c: the endpoints a link watches. take: -1 when the service
 * table is full or out of memory. welcome: the welcome's "endpoints"
 * (NULL: none, or out of memory when the link watches some). */
int link_watch_take(struct link *l, const struct proto_hello *hello);
void link_watch_drop(struct link *l);
cJSON *link_watch_welcome(struct link *l);
/* s published a new set; old is the one before (NULL: none). */
void hub_watch_send(struct hub *h, struct service *s, const struct epset *old);

/* link_index.c: instances by (service, instance id) */
struct link *link_index_find(const struct hub *h, const struct service *svc,
			     const char *instance);
void link_index_add(struct hub *h, struct link *l);
void link_index_remove(struct hub *h, struct link *l);

/* link_auth.c: the link's token (auth on) */
int link_auth_confirm(struct hub *h, struct lws *wsi); /* CONFIRM_UPGRADE */
int link_auth_take(struct hub *h, struct lws *wsi, struct link *l);
void link_auth_forget(struct link *l);
bool link_auth_lapsed(struct hub *h, struct link *l, int64_t now_s,
		      bool secrets_changed);

/* link.c */
extern const struct lws_protocols link_protocols[];
void link_send(struct link *l, struct event *ev);
/* link_send.c: l's queue, written (several events in one write) until the
 * socket pushes back; -1 when the write failed. */
int link_flush(struct link *l);
size_t link_queued(const struct link *l);
void link_queue_clear(struct link *l);
void link_queue_trim(struct link *l); /* an empty queue goes */
/* Between these, links queue what they are sent; uncork writes each
 * one's share at once (a group commit's events: one write per link). */
void hub_cork(struct hub *h);
void hub_uncork(struct hub *h);
void link_close(struct link *l, int code, const char *reason);
void link_kill(struct link *l, const char *why);
void link_ping(struct link *l);
#define LINK_LOAD_SCALE EP_LOAD_SCALE /* a load of 1.0 */
#define LINK_LOAD_NONE  0xffff
void link_set_status(struct link *l, enum proto_state state, uint16_t load);
void link_unpark(struct hub *h, bool all);

/* hub_drain.c */
void hub_drain_run(struct hub *h, struct hub_req *req);

/* hub_metrics.c */
char *hub_metrics_text(struct hub *h);
void hub_metrics_idempotency(struct metrics_text *t, uint64_t replays,
			     size_t keys, uint64_t evicted);

/* hub_req.c */
void hub_json_seq(cJSON *o, uint64_t seq); /* "seq", exact */
cJSON *hub_agent_json(const struct hub *h, const struct link *l);
void hub_apply_services_conf(struct hub *h, const struct dconf *conf);
cJSON *hub_service_json(const struct hub *h, const struct service *s);

#endif
