/*
 * cluster_mirror: the cluster backend's work on the hub thread (store.h).
 * The reader's batches of the Redis stream are retained in the hub's log
 * and delivered exactly as the journal's are (hub_deliver); the readiness
 * they carry is mirrored into the registry. This node's links are reported
 * back to the writer as counts and agents. A write call on an API thread
 * waits here (cluster_await) until its event has been delivered on this
 * node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"
#include "hub_int.h"
#include "log.h"

#define RECENT                                                                 \
	(sizeof(((struct cluster *)0)->recent) /                               \
	 sizeof(((struct cluster *)0)->recent[0]))

/* ---- what has been applied here, for the writes waiting on it ------------ */

/* Record how many links seq went to, for the call waiting on it. */
static void remember(struct cluster *c, uint64_t seq, size_t delivered)
{
	size_t i = seq % RECENT;

	pthread_mutex_lock(&c->applied_mu);
	c->recent[i].seq = seq;
	c->recent[i].delivered = delivered;
	pthread_mutex_unlock(&c->applied_mu);
}

/* The log has moved: wake the writes waiting on it. */
static void applied(struct cluster *c, const struct evlog *log, bool synced)
{
	pthread_mutex_lock(&c->applied_mu);
	snprintf(c->applied_epoch, sizeof(c->applied_epoch), "%s", log->epoch);
	c->applied_seq = log->seq;
	if (synced)
		c->syncs++;
	pthread_cond_broadcast(&c->applied_cv);
	pthread_mutex_unlock(&c->applied_mu);
}

/*
 * API thread: wait until event seq of epoch has been delivered here, and
 * return to how many links (0 once cluster.timeout has passed: the event is
 * durable in Redis and will still be delivered). One of another epoch is
 * answered only after a sync: its epoch is then the one replaced;
 * otherwise it may be the next one, not read yet.
 */
size_t cluster_await(struct cluster *c, const char *epoch, uint64_t seq)
{
	struct timespec deadline =
		clock_mono_ts(clock_mono_ms() + c->timeout_ms);
	size_t delivered = 0;
	unsigned syncs;

	pthread_mutex_lock(&c->applied_mu);
	syncs = c->syncs;
	while (!atomic_load(&c->stop)) {
		bool same = strcmp(epoch, c->applied_epoch) == 0;

		if (same && seq <= c->applied_seq) {
			if (c->recent[seq % RECENT].seq == seq)
				delivered = c->recent[seq % RECENT].delivered;
			break;
		}
		if ((!same && c->syncs != syncs) ||
		    pthread_cond_timedwait(&c->applied_cv, &c->applied_mu,
					   &deadline) != 0)
			break;
	}
	pthread_mutex_unlock(&c->applied_mu);
	return delivered;
}

/* ---- the stream into the hub ----------------------------------------------
 */

/* The hub's log mirrors the stream: retained, never written to disk. */
int cluster_mirror_open(struct hub *h, size_t history)
{
	return evlog_open_mirror(&h->log, history);
}

/*
 * History was reset under the links (Redis lost its data, or this node
 * missed part of the stream): what they hold no longer lines up with the
 * log, so they link again and get recovered:false with a fresh snapshot.
 */
static void relink_all(struct hub *h, const char *why)
{
	size_t n = 0;

	for (size_t i = 0; i < h->n_links; i++)
		if (h->links[i]->state == LINK_ACTIVE) {
			link_close(h->links[i], 1012, why);
			n++;
		}
	if (n)
		log_warn("cluster relink", "links=%zu reason=\"%s\"", n, why);
}

static void apply_sync(struct cluster *c, struct hub *h,
		       const struct cluster_batch *b)
{
	struct registry *r = &h->registry;

	if (c->synced && strcmp(b->epoch, h->log.epoch) != 0)
		relink_all(h, "cluster history reset");
	evlog_reset(&h->log, b->epoch, b->n ? b->entries[0].seq - 1 : b->seq);
	for (size_t i = 0; i < r->n; i++)
		r->services[i]->ready = false;
	for (size_t i = 0; i < b->n_ready; i++) {
		struct service *s = registry_get(r, b->ready[i]);

		if (s)
			s->ready = true;
	}
	c->synced = true;
}

/* One event from the stream: retain, deliver, and mirror its readiness. */
static void apply_entry(struct cluster *c, struct hub *h,
			const struct cluster_entry *e, bool deliver)
{
	int64_t now_wall = clock_wall_ms();
	struct event *ev = evlog_event_parse(e->text, e->len, h->log.epoch,
					     e->seq, e->wall_ms);
	size_t delivered = 0;

	if (!ev) {
		/* Not ours to understand: keep the seq moving, say so. */
		log_warn("cluster entry skipped", "seq=%llu",
			 (unsigned long long)e->seq);
		h->log.seq = e->seq;
		return;
	}
	/* Delivery latency counts from when Redis appended it. */
	ev->created_us =
		clock_mono_us() -
		(now_wall > e->wall_ms ? (now_wall - e->wall_ms) * 1000 : 0);
	evlog_adopt(&h->log, ev);
	if (ev->kind == EVENT_READINESS) {
		const cJSON *ready =
			cJSON_GetObjectItemCaseSensitive(ev->value, "ready");
		struct service *s = registry_get(&h->registry, ev->service);

		if (s) {
			s->ready = cJSON_IsTrue(ready);
			registry_release_service(&h->registry, s);
		}
		log_info("readiness",
			 "service=%s ready=%s seq=%llu cluster=true",
			 ev->service, cJSON_IsTrue(ready) ? "true" : "false",
			 (unsigned long long)ev->seq);
	}
	if (deliver) {
		delivered = hub_deliver(h, ev);
		if (ev->kind == EVENT_READINESS)
			hub_sse_change(h, ev->service);
		cluster_note_ack(c, ev->seq, delivered);
	} else if (ev->kind <= EVENT_COMMAND) {
		h->stats.events[ev->kind]++; /* history, counted all the same */
	}
	remember(c, ev->seq, delivered);
	event_unref(ev);
}

/* Hub thread (hub_run from the reader): one batch of the stream. */
void cluster_mirror_apply(struct hub *h, void *arg, struct hub_req *req)
{
	struct cluster *c = arg;
	const struct cluster_batch *b = c->applying;
	size_t i = 0;

	req->status = 200;
	if (b->sync) {
		apply_sync(c, h, b);
		/* History: retained for resume and /events, not delivered. */
		for (; i < b->n; i++)
			apply_entry(c, h, &b->entries[i], false);
		h->log.seq = b->seq > h->log.seq ? b->seq : h->log.seq;
		hub_sink_resync(h);
		applied(c, &h->log, true);
		if (h->n_parked)
			link_unpark(h, false);
		return;
	}
	if (!c->synced || strcmp(b->epoch, h->log.epoch) != 0) {
		req->status = 409;
		return;
	}
	/* Each link's share of the batch in one write (link_send.c), as a
	 * group commit's on a single node. A link closed meanwhile (its
	 * queue full) is announced through Redis, later in the stream. */
	if (b->n > 1)
		hub_cork(h);
	for (; i < b->n; i++) {
		const struct cluster_entry *e = &b->entries[i];

		if (e->seq <= h->log.seq)
			continue; /* read twice: once is enough */
		if (e->seq != h->log.seq + 1) {
			/* The stream was trimmed past what this node read:
			 * events are missing here. */
			log_warn("cluster gap", "have=%llu next=%llu",
				 (unsigned long long)h->log.seq,
				 (unsigned long long)e->seq);
			relink_all(h, "cluster history gap");
			evlog_reset(&h->log, h->log.epoch, e->seq - 1);
		}
		apply_entry(c, h, e, true);
	}
	if (h->corked)
		hub_uncork(h);
	applied(c, &h->log, false);
	if (h->n_parked)
		link_unpark(h, false);
}

/* Hub thread (hub_run from the writer): this node's counts per service and
 * its agents, for a full report. */
void cluster_mirror_snapshot(struct hub *h, void *arg, struct hub_req *req)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *services = cJSON_AddArrayToObject(o, "services");
	cJSON *agents = cJSON_AddObjectToObject(o, "agents");
	char key[PROTO_NAME_MAX + PROTO_INSTANCE_MAX + 2];

	(void)arg;
	for (size_t i = 0; i < h->registry.n; i++) {
		const struct service *s = h->registry.services[i];
		cJSON *row = cJSON_CreateArray();

		cJSON_AddItemToArray(row, cJSON_CreateString(s->name));
		cJSON_AddItemToArray(row,
				     cJSON_CreateNumber((double)s->min_ready));
		cJSON_AddItemToArray(row, cJSON_CreateNumber(s->instances));
		cJSON_AddItemToArray(row,
				     cJSON_CreateNumber(s->ready_instances));
		cJSON_AddItemToArray(row, cJSON_CreateNumber(s->dependents));
		cJSON_AddItemToArray(services, row);
	}
	for (size_t i = 0; i < h->n_links; i++) {
		const struct link *l = h->links[i];

		if (l->state != LINK_ACTIVE)
			continue;
		snprintf(key, sizeof(key), "%s/%s", l->svc->name,
			 link_instance(l));
		cJSON_AddItemToObject(agents, key, hub_agent_json(h, l));
	}
	req->body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	req->status = req->body ? 200 : 500;
}

/* ---- the hub's links, reported (store_ops) --------------------------------
 */

/* Redis decides readiness from every node's counts (cluster.lua); this
 * node only reports its own. */
void cluster_store_announce(struct store *s, struct service *svc)
{
	cluster_note_service((struct cluster *)s, svc->name, svc->min_ready,
			     svc->instances, svc->ready_instances,
			     svc->dependents);
}

/*
 * A link became an instance, changed, or is going (gone: its counts already
 * taken off its service, its dependencies not yet dropped): report what
 * moved. A drained link's agent left for another node: it leaves this
 * node's agents; its counts stay (hub_drain.c).
 */
void cluster_store_instance(struct store *s, struct link *l,
			    enum store_instance what)
{
	struct cluster *c = (struct cluster *)s;
	bool gone = what == INSTANCE_GONE;
	cJSON *a;

	if (what == INSTANCE_MOVED) {
		cluster_note_agent(c, l->svc->name, link_instance(l), NULL);
		return;
	}
	cluster_store_announce(s, l->svc);
	for (size_t i = 0; i < l->n_deps; i++) {
		const struct service *d = l->deps[i];

		cluster_note_service(c, d->name, d->min_ready, d->instances,
				     d->ready_instances,
				     d->dependents - (gone ? 1 : 0));
	}
	a = gone ? NULL : hub_agent_json(c->hub, l);
	cluster_note_agent(c, l->svc->name, link_instance(l),
			   a ? cJSON_PrintUnformatted(a) : NULL);
	cJSON_Delete(a);
}

/* No state from Redis yet: a welcome now would be wrong. */
const char *cluster_store_not_yet(const struct store *s)
{
	return ((const struct cluster *)s)->synced ?
		       NULL :
		       "cluster state not loaded yet";
}

void cluster_store_info(struct store *s, cJSON *o)
{
	struct cluster *c = (struct cluster *)s;
	cJSON *info = cJSON_AddObjectToObject(o, "cluster");

	cJSON_AddBoolToObject(info, "redis", atomic_load(&c->up));
	cJSON_AddBoolToObject(info, "synced", c->synced);
}

/* With cluster.sentinels: where the master is, and how often it moved. */
static void metrics_master(struct metrics_text *t, struct cluster *c)
{
	char addr[CONF_ADDR_TEXT], esc[CONF_ADDR_TEXT], label[340];

	if (!cluster_master(c, addr, sizeof(addr)))
		return;
	snprintf(label, sizeof(label), "addr=\"%s\"",
		 metrics_label(esc, sizeof(esc), addr));
	metrics_family(t, "discovery_cluster_master_info", "gauge",
		       "The Redis master the sentinels named, by address.");
	metrics_sample(t, "discovery_cluster_master_info", label, 1);
	metrics_family(t, "discovery_cluster_failovers_total", "counter",
		       "Times this node found the master at another address.");
	metrics_sample(t, "discovery_cluster_failovers_total", NULL,
		       (double)atomic_load(&c->failovers));
}

void cluster_store_metrics(struct store *s, struct metrics_text *t)
{
	struct cluster *c = (struct cluster *)s;

	hub_metrics_idempotency(t, atomic_load(&c->idem_replays), 0, 0);
	metrics_family(t, "discovery_cluster_enabled", "gauge",
		       "1 when nodes share state over Redis (cluster mode).");
	metrics_sample(t, "discovery_cluster_enabled", NULL, 1);
	metrics_family(t, "discovery_cluster_redis_up", "gauge",
		       "1 while this node reads the Redis stream.");
	metrics_sample(t, "discovery_cluster_redis_up", NULL,
		       atomic_load(&c->up) ? 1 : 0);
	metrics_family(t, "discovery_cluster_redis_errors_total", "counter",
		       "Redis calls that failed (the connection is then made "
		       "again).");
	metrics_sample(t, "discovery_cluster_redis_errors_total", NULL,
		       (double)atomic_load(&c->errors));
	metrics_master(t, c);
	metrics_family(t, "discovery_cluster_seq", "gauge",
		       "The last seq of the shared log this node has applied.");
	metrics_sample(t, "discovery_cluster_seq", NULL,
		       (double)c->hub->log.seq);
}
