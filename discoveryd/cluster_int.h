/*
 * cluster: the backend of several discoveryd nodes sharing one log and one
 * registry in Redis (store.h, docs/cluster.md), when cluster.redis or
 * cluster.sentinels is set.
 *
 * Redis holds the truth: the epoch, the seq, the event stream, the
 * declarations, every node's instance counts and agents, and which nodes are
 * alive. Every change is one run of discoveryd/cluster.lua, so it is atomic
 * and gapless. Each node then only mirrors:
 *
 *   - the reader thread follows the stream (XREAD BLOCK from the last seq it
 *     applied, so a reconnect resumes where it stopped: no Pub/Sub, nothing
 *     to resubscribe) and hands the events to the hub thread, where
 *     cluster_mirror.c retains and delivers them exactly as the journal's;
 *   - the writer thread reports this node's instance counts and agents
 *     (coalesced), and beats the node's heartbeat, which also sweeps dead
 *     nodes and expired declarations;
 *   - API threads run write calls against Redis themselves (each on its own
 *     connection) and answer once this node has delivered the event; reads
 *     are answered for the whole cluster, or from this node's view while
 *     Redis is away.
 *
 * The hub never blocks on Redis: an outage leaves its agents served with the
 * last known state, and write calls answer 503.
 */
/*
 * cluster_int: what the parts of cluster mode share (above).
 *
 *   cluster.c         connections, the script, lifecycle, store_ops
 *   cluster_sentinel.c  finding the master through Redis Sentinel
 *   cluster_api.c     the API threads' calls
 *   cluster_reader.c  the reader thread: the stream, in batches
 *   cluster_mirror.c  the hub thread: batches into the hub, links reported
 *   cluster_writer.c  the writer thread: this node's state into Redis
 *
 * hiredis 0.14 is used in blocking mode with a timeout on every call
 * (cluster.timeout): a frozen Redis makes a call fail, never hang. A
 * connection that failed once is thrown away and made again.
 */
#ifndef DISCOVERYD_CLUSTER_INT_H
#define DISCOVERYD_CLUSTER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "backoff.h"
#include "clock.h"
#include "htab.h"
#include "store.h"

/* What the reader hands the hub thread (cluster_mirror_apply). */
struct cluster_entry {
	uint64_t seq;
	int64_t wall_ms; /* when Redis appended it */
	char *text;      /* the record, JSON */
	size_t len;
};

struct cluster_batch {
	char epoch[PROTO_EPOCH_MAX + 1];
	bool sync;    /* a fresh start: reset to (epoch, seq) */
	uint64_t seq; /* sync: the stream's head */
	char **ready; /* sync: the services announced ready */
	size_t n_ready;
	struct cluster_entry *entries;
	size_t n;
};

/* A Redis key or client name: the prefix, a fixed word, a node's name or
 * a number. */
#define CLUSTER_KEY_MAX 300
#define READ_BLOCK_MS   1000 /* XREAD BLOCK: how often the reader looks up */
#define READ_COUNT      1024 /* entries per XREAD */
#define AGENTS_CHUNK    256  /* commands per pipelined batch */
#define RETRY_MIN_MS    100
#define RETRY_MAX_MS    2000
#define API_PAUSE_MS                                                           \
	1000 /* after an API call failed, answer 503 at                        \
		once for this long */

enum note_kind {
	NOTE_SERVICE = 1, /* a service's counts on this node */
	NOTE_AGENT,       /* an agent (json NULL = gone) */
	NOTE_ACK,         /* how many links here an event went to */
};

/*
 * A change to report. Services and agents are absolute state, so a newer
 * note replaces an older one for the same key in place (the queue holds at
 * most one per key, however long Redis is away); acks are each their own.
 */
struct note {
	struct note *next; /* the queue, oldest first */
	struct hnode node; /* in note_table (not acks) */
	enum note_kind kind;
	char key[PROTO_NAME_MAX + PROTO_INSTANCE_MAX +
		 2]; /* name, or svc/inst */
	int64_t min_ready;
	unsigned instances, ready, dependents;
	char *json;
	uint64_t seq;     /* ack */
	size_t delivered; /* ack */
};

struct min_ready {
	char *name;
	int64_t value;
};

struct cluster {
	struct store base; /* first: a struct store * is a struct cluster * */
	struct hub *hub;
	struct redis_url url; /* with sentinels: credentials, db only */
	struct conf_addr sentinels[DCONF_SENTINELS_MAX];
	size_t n_sentinels; /* 0: url.addr is the one server */
	char master_name[PROTO_INSTANCE_MAX + 1];
	char sentinel_password[256];
	int64_t min_replicas;      /* WAIT for this many before a 2xx */
	pthread_mutex_t master_mu; /* master, next_sentinel */
	struct conf_addr master;   /* the last master found (metrics, logs) */
	size_t next_sentinel;      /* the one to ask first */
	atomic_ullong failovers;   /* times the master found was another */
	char prefix[PROTO_INSTANCE_MAX + 1];
	char node[PROTO_INSTANCE_MAX + 1];
	int64_t node_ttl_ms;
	int64_t timeout_ms;
	size_t history;
	char sha[41]; /* the script's SHA-1, once loaded */
	pthread_mutex_t sha_mu;

	pthread_key_t conn_key; /* API threads: one connection each */
	atomic_uint conn_gen;   /* +1 each time the reader lost Redis */

	pthread_mutex_t mu; /* notes, note_table, min */
	pthread_cond_t cv;  /* on the monotonic clock */
	/* The endpoints poller's nap (cluster_peers.c): its own, so that it
	 * never takes a signal meant for the writer. Under mu. */
	pthread_cond_t peers_cv;
	struct note *notes, **notes_tail;
	struct htab note_table; /* queued notes by kind and key */
	struct min_ready *min;
	size_t n_min;
	pthread_t reader, writer, peers;
	bool started;
	atomic_bool stop;
	atomic_bool up;               /* the reader follows the stream */
	atomic_llong read_ms;         /* mono ms: its last read came back */
	atomic_llong coalesce_ms;     /* cluster.coalesce (cluster_reader.c) */
	atomic_bool writer_up;        /* the writer is connected */
	atomic_llong api_pause_until; /* wall ms: an API call failed */
	atomic_ullong errors;

	/* The mirror (cluster_mirror.c): synced and applying are the hub
	 * thread's; what has been applied is under applied_mu. */
	bool synced; /* the stream's state is here: hellos are welcome */
	const struct cluster_batch *applying; /* the reader's, during a job */
	pthread_mutex_t applied_mu;
	pthread_cond_t applied_cv; /* on the monotonic clock */
	char applied_epoch[PROTO_EPOCH_MAX + 1];
	uint64_t applied_seq;
	unsigned syncs;
	struct {
		uint64_t seq;
		size_t delivered;
	} recent[256]; /* delivered per recent seq, by seq % 256 */

	/* Idempotency keys (cluster_idem.c). */
	struct idem_flight *idem_flights; /* in flight here, under mu */
	atomic_llong idem_retention_ms;
	atomic_ullong idem_replays;

	/* Webhooks' leases and cursors (cluster_webhook.c); NULL: none. */
	const struct webhook_backend *webhooks;
};

/* cluster_webhook.c: the webhook module's backend (webhook.h); NULL when
 * out of memory. Freed with the store, after the webhook thread. */
struct webhook_backend;
const struct webhook_backend *cluster_webhook_backend(struct cluster *c);
void cluster_webhook_free(const struct webhook_backend *b);

/* cluster.c: lifecycle; SIGHUP: min_ready per service may have changed. */
void cluster_apply_conf(struct cluster *c, const struct dconf *conf);
bool cluster_master(struct cluster *c, char *buf, size_t size);

/* cluster_api.c: the calls it answers (store_ops.call, begin, end). */
extern store_fn *const cluster_calls[HUB_OPS];
bool cluster_call_begin(struct store *s, struct hub_req *req);
void cluster_call_end(struct store *s, struct hub_req *req);

/* cluster_mirror.c: the hub thread's side (hub_run jobs, store_ops). */
int cluster_mirror_open(struct hub *h, size_t history); /* before start */
void cluster_mirror_apply(struct hub *h, void *arg, struct hub_req *req);
void cluster_mirror_snapshot(struct hub *h, void *arg, struct hub_req *req);
size_t cluster_await(struct cluster *c, const char *epoch, uint64_t seq);
void cluster_store_announce(struct store *s, struct service *svc);
void cluster_store_instance(struct store *s, struct link *l,
			    enum store_instance what);
const char *cluster_store_not_yet(const struct store *s);
void cluster_store_info(struct store *s, cJSON *o);
void cluster_store_metrics(struct store *s, struct metrics_text *t);

/* cluster_writer.c: from the hub thread, absolute state to report
 * (coalesced); json: the agent object (taken), NULL when it is gone. An
 * event read from the stream went to `delivered` links here. */
void cluster_note_service(struct cluster *c, const char *name,
			  int64_t min_ready, unsigned instances, unsigned ready,
			  unsigned dependents);
void cluster_note_agent(struct cluster *c, const char *service,
			const char *instance, char *json);
void cluster_note_ack(struct cluster *c, uint64_t seq, size_t delivered);

/* cluster.c */
struct timeval cluster_tv(int64_t ms);
bool cluster_reply_ok(const redisReply *r);
/* A new connection named discoveryd:NODE:ROLE, or NULL (logged). */
redisContext *cluster_connect(struct cluster *c, const char *role);
/*
 * Run the script: op, then argc extra arguments. A write carries its
 * deadline (wall ms; 0 = none): a script that Redis runs after it changes
 * nothing. NULL when the connection failed (the caller drops it).
 */
redisReply *cluster_script(struct cluster *c, redisContext *ctx,
			   int64_t deadline, const char *op, int argc,
			   const char **args);
/*
 * A reply that says this server is no longer the master (READONLY, a
 * replica refusing WAIT, UNBLOCKED by a role change, MASTERDOWN, LOADING)
 * marks ctx failed, so that every caller drops it and finds the master
 * again, as after a lost connection. Returns r.
 */
redisReply *cluster_check(redisContext *ctx, redisReply *r);
/* ROLE says master. */
bool cluster_is_master(redisContext *ctx);
/*
 * With cluster.min_replicas: wait until that many replicas have everything
 * this connection wrote. 0 when they have, 1 when fewer confirmed within
 * timeout_ms/2, -1 when the connection failed.
 */
int cluster_wait_replicas(struct cluster *c, redisContext *ctx);
/* Wait before reconnecting: the next delay of b (libcommon's backoff: full
 * jitter, doubling, capped), in steps that see a stop. */
void cluster_backoff(struct cluster *c, struct backoff *b);

/* cluster_idem.c: a write's Idempotency-Key around its call. begin: true
 * when it answered (409: in flight here). args: the script's last four
 * arguments. reply: 1 when the script's reply *o was the answer (a replay,
 * 422, 409), 0 to go on with *o (perhaps the first run's reply, to rebuild
 * a replay). end: store a 2xx answer on ctx (may be NULL). */
struct cluster_idem_args {
	char fp[2 * IDEM_FP_LEN + 1];
	char retention[24], window[24];
	const char *argv[4];
};
bool cluster_idem_begin(struct cluster *c, struct hub_req *req);
int cluster_idem_args(struct cluster *c, const struct hub_req *req,
		      struct cluster_idem_args *a);
int cluster_idem_reply(struct cluster *c, struct hub_req *req, cJSON **o);
void cluster_idem_end(struct cluster *c, redisContext *ctx,
		      struct hub_req *req);
void cluster_idem_release(struct cluster *c);

/*
 * A connection to the server at addr, authenticated, on the database, named,
 * with the script loaded; with sentinels, also checked to be a master (a
 * sentinel that has not seen a failover yet names a demoted one). NULL
 * (logged) otherwise.
 */
redisContext *cluster_open(struct cluster *c, const struct conf_addr *addr,
			   const char *role);

/* cluster_sentinel.c: the sentinels, asked in turn, name the master;
 * cluster_open connects to it. NULL when none names one that answers. */
redisContext *cluster_sentinel_connect(struct cluster *c, const char *role);

/* cluster_reader.c, cluster_writer.c */
void *cluster_reader_main(void *arg);
void *cluster_writer_main(void *arg);
void *cluster_peers_main(void *arg); /* cluster_peers.c */
void cluster_notes_free(struct note *n);

#endif
