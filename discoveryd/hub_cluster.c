/*
 * hub_cluster: the hub's side of cluster mode (cluster.h), on the hub
 * thread. Events read from the Redis stream are retained and delivered here
 * exactly as the journal's are; this node's links are reported back as
 * counts and agents; write calls wait here until their event is delivered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "hub_int.h"
#include "log.h"

/* Record how many links seq went to, for the call waiting on it. */
static void remember(struct hub *h, uint64_t seq, size_t delivered)
{
	size_t i = seq % (sizeof(h->recent) / sizeof(h->recent[0]));

	h->recent[i].seq = seq;
	h->recent[i].delivered = delivered;
}

static bool recall(const struct hub *h, uint64_t seq, size_t *delivered)
{
	size_t i = seq % (sizeof(h->recent) / sizeof(h->recent[0]));

	if (h->recent[i].seq != seq)
		return false;
	*delivered = h->recent[i].delivered;
	return true;
}

/*
 * Answer the waiters whose event is here. One of another epoch is answered
 * only right after a sync (synced): its epoch is then the one replaced;
 * otherwise it may be the next one, not read yet.
 */
static void wake_waiters(struct hub *h, bool synced)
{
	for (struct hub_req **p = &h->waiters; *p;) {
		struct hub_req *req = *p;
		bool same = strcmp(req->epoch, h->log.epoch) == 0;

		if ((same && req->after > h->log.seq) || (!same && !synced)) {
			p = &req->next;
			continue;
		}
		*p = req->next;
		req->delivered = 0;
		if (same)
			recall(h, req->after, &req->delivered);
		req->status = 200;
		hub_reply(h, req);
	}
}

void hub_cluster_await(struct hub *h, struct hub_req *req)
{
	req->status = 200;
	req->delivered = 0;
	if (strcmp(req->epoch, h->log.epoch) == 0 && req->after <= h->log.seq) {
		recall(h, req->after, &req->delivered);
		return;
	}
	/* Not read from the stream yet: answered by wake_waiters, or by the
	 * tick once the cluster timeout has passed (delivered 0: the event
	 * is durable in Redis and will still be delivered). */
	req->deferred = true;
	req->deadline_ms = clock_mono_ms() + h->cluster_timeout_ms;
	req->next = h->waiters;
	h->waiters = req;
}

void hub_cluster_expire_waiters(struct hub *h, int64_t now_ms)
{
	for (struct hub_req **p = &h->waiters; *p;) {
		struct hub_req *req = *p;

		if (now_ms < req->deadline_ms && !h->stopping) {
			p = &req->next;
			continue;
		}
		*p = req->next;
		req->status = 200;
		req->delivered = 0;
		hub_reply(h, req);
	}
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

static void apply_sync(struct hub *h, const struct cluster_batch *b)
{
	struct registry *r = &h->registry;
	bool had = h->cluster_synced;

	if (had && strcmp(b->epoch, h->log.epoch) != 0)
		relink_all(h, "cluster history reset");
	evlog_reset(&h->log, b->epoch, b->n ? b->entries[0].seq - 1 : b->seq);
	for (size_t i = 0; i < r->n; i++)
		r->services[i]->ready = false;
	for (size_t i = 0; i < b->n_ready; i++) {
		struct service *s = registry_get(r, b->ready[i]);

		if (s)
			s->ready = true;
	}
	h->cluster_synced = true;
}

/* One event from the stream: retain, deliver, and mirror its readiness. */
static void apply_entry(struct hub *h, const struct cluster_entry *e,
			bool deliver)
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
	if (ev->kind <= EVENT_COMMAND)
		h->stats.events[ev->kind]++;
	if (deliver) {
		delivered = hub_fanout(h, ev);
		hub_sse_event(h, ev);
		if (ev->kind == EVENT_READINESS)
			hub_sse_change(h, ev->service);
		cluster_note_ack(h->cluster, ev->seq, delivered);
	}
	remember(h, ev->seq, delivered);
	event_unref(ev);
}

void hub_cluster_apply(struct hub *h, struct hub_req *req)
{
	const struct cluster_batch *b = req->batch;
	size_t i = 0;

	req->status = 200;
	if (b->sync) {
		apply_sync(h, b);
		/* History: retained for resume and /events, not delivered. */
		for (; i < b->n; i++)
			apply_entry(h, &b->entries[i], false);
		h->log.seq = b->seq > h->log.seq ? b->seq : h->log.seq;
		wake_waiters(h, true);
		if (h->n_parked)
			link_unpark(h, false);
		return;
	}
	if (!h->cluster_synced || strcmp(b->epoch, h->log.epoch) != 0) {
		req->status = 409;
		return;
	}
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
		apply_entry(h, e, true);
	}
	wake_waiters(h, false);
	if (h->n_parked)
		link_unpark(h, false);
}

/* This node's counts per service and its agents, for a full report. */
void hub_cluster_snapshot(struct hub *h, struct hub_req *req)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *services = cJSON_AddArrayToObject(o, "services");
	cJSON *agents = cJSON_AddObjectToObject(o, "agents");
	char key[PROTO_NAME_MAX + PROTO_INSTANCE_MAX + 2];

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
		snprintf(key, sizeof(key), "%s/%s", l->svc->name, l->instance);
		cJSON_AddItemToObject(agents, key, hub_agent_json(h, l));
	}
	req->body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	req->status = req->body ? 200 : 500;
}

/* A drained link's agent left for another node: it leaves this node's
 * agents; its counts stay (hub_drain.c). */
void hub_cluster_note_moved(struct hub *h, struct link *l)
{
	if (h->cluster)
		cluster_note_agent(h->cluster, l->svc->name, l->instance, NULL);
}

void hub_cluster_note_service(struct hub *h, const struct service *s)
{
	cluster_note_service(h->cluster, s->name, s->min_ready, s->instances,
			     s->ready_instances, s->dependents);
}

/*
 * A link became an instance, changed, or is going (gone: called with its
 * counts already taken off its service, before its dependencies are
 * dropped): report what moved.
 */
void hub_cluster_note_link(struct hub *h, struct link *l, bool gone)
{
	cJSON *a;

	if (!h->cluster || !l->svc)
		return;
	hub_cluster_note_service(h, l->svc);
	for (size_t i = 0; i < l->n_deps; i++) {
		const struct service *d = l->deps[i];

		cluster_note_service(h->cluster, d->name, d->min_ready,
				     d->instances, d->ready_instances,
				     d->dependents - (gone ? 1 : 0));
	}
	a = gone ? NULL : hub_agent_json(h, l);
	cluster_note_agent(h->cluster, l->svc->name, l->instance,
			   a ? cJSON_PrintUnformatted(a) : NULL);
	cJSON_Delete(a);
}
