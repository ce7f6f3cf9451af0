/*
 * cluster: several discoveryd nodes sharing one log and one registry in
 * Redis (docs/cluster.md), when cluster.redis or cluster.sentinels is
 * set.
 *
 * Redis holds the truth: the epoch, the seq, the event stream, the
 * declarations, every node's instance counts and agents, and which nodes are
 * alive. Every change is one run of discoveryd/cluster.lua, so it is atomic
 * and gapless. Each node then only mirrors:
 *
 *   - the reader thread follows the stream (XREAD BLOCK from the last seq it
 *     applied, so a reconnect resumes where it stopped: no Pub/Sub, nothing
 *     to resubscribe) and hands the events to the hub, which retains and
 *     delivers them exactly as the journal's;
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
#ifndef DISCOVERYD_CLUSTER_H
#define DISCOVERYD_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dconf.h"
#include "hub.h"

struct cluster;

/* What the reader hands the hub (HUB_CLUSTER_APPLY). */
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

/* Parse the config's cluster section; NULL with a message in err. */
struct cluster *cluster_new(const struct dconf *conf, struct hub *h, char *err,
			    size_t errlen);
/* Start the reader and writer threads. 0 or -1. */
int cluster_start(struct cluster *c);
void cluster_stop(struct cluster *c);
void cluster_free(struct cluster *c);
/* SIGHUP: min_ready per service may have changed. */
void cluster_apply_conf(struct cluster *c, const struct dconf *conf);

/* API threads: does the cluster answer this call, and answer it. */
bool cluster_takes(enum hub_op op);
void cluster_call(struct cluster *c, struct hub_req *req);

/* Hub thread: absolute state to report (coalesced by the writer). */
void cluster_note_service(struct cluster *c, const char *name,
			  int64_t min_ready, unsigned instances, unsigned ready,
			  unsigned dependents);
/* json: the agent object (taken), or NULL when the agent is gone. */
void cluster_note_agent(struct cluster *c, const char *service,
			const char *instance, char *json);

/* An event read from the stream went to `delivered` links here. */
void cluster_note_ack(struct cluster *c, uint64_t seq, size_t delivered);

/* For /metrics. */
bool cluster_redis_up(const struct cluster *c);
uint64_t cluster_redis_errors(const struct cluster *c);
/* Keyed writes answered again (cluster_idem.c). */
uint64_t cluster_idem_replays(const struct cluster *c);
/* With sentinels: how often the master changed, and where it is now
 * (false, buf untouched, before one is found or without sentinels). */
uint64_t cluster_failovers(const struct cluster *c);
bool cluster_master(struct cluster *c, char *buf, size_t size);

#endif
