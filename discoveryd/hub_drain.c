/*
 * hub_drain: taking a node out of service (a rolling upgrade), on the hub
 * thread. POST /api/discovery/nodes/{node}/drain, or SIGTERM with drain:
 * set, starts it; in cluster mode the request for another node goes
 * through Redis, whose heartbeat hands it over (cluster_writer.c).
 *
 * A drain closes the node's links in steps, drain.batch of them every
 * drain.interval, each with 1012 and the hint "drain spread_ms=INTERVAL"
 * (proto.h): their agents link again on another node after a delay spread
 * over the interval, so the others take them at batch/interval a second,
 * never all at once. Meanwhile the node refuses hellos (1013 "node
 * draining"), /healthz answers 503, and events still reach the links not
 * closed yet; what an agent misses between its close and its next hello is
 * replayed where it resumes. A drained link's instance keeps counting here
 * (link.c, unlink_instance) until the node stops, and in cluster mode for
 * node_ttl after that, as for any stopped node: its agent is moving, not
 * gone, so dependents see no readiness flap. The drain is over once no
 * link is left; the node then serves its API until it is stopped.
 */
#include <stdio.h>
#include <string.h>

#include "hub_int.h"
#include "log.h"

enum hub_drain_state hub_drain_state(const struct hub *h)
{
	return (enum hub_drain_state)atomic_load(&h->drain);
}

static size_t active_links(const struct hub *h)
{
	size_t n = 0;

	for (size_t i = 0; i < h->n_links; i++)
		n += h->links[i]->state == LINK_ACTIVE;
	return n;
}

/* One step: the next batch of links closed with the hint. */
static void step(lws_sorted_usec_list_t *sul)
{
	struct hub *h = lws_container_of(sul, struct hub, drain_sul);
	size_t closed = 0, left = 0;
	char reason[48];

	proto_drain_reason(reason, sizeof(reason),
			   (uint32_t)h->drain_interval_ms);
	for (size_t i = 0; i < h->n_links; i++) {
		struct link *l = h->links[i];

		if (l->state != LINK_ACTIVE)
			continue;
		if (closed < h->drain_batch) {
			link_close(l, 1012, reason);
			closed++;
		} else {
			left++;
		}
	}
	h->drain_closed += closed;
	if (closed)
		log_info("drain step", "closed=%zu left=%zu", closed, left);
	if (left) {
		lws_sul_schedule(h->ctx, 0, &h->drain_sul, step,
				 h->drain_interval_ms * LWS_US_PER_MS);
		return;
	}
	atomic_store(&h->drain, HUB_DRAINED);
	log_info("drained", "links=%zu took_ms=%lld", h->drain_closed,
		 (long long)(clock_mono_ms() - h->drain_started_ms));
}

/*
 * HUB_DRAIN: instance names the node ("": this one, for SIGTERM). Draining
 * twice is draining once.
 */
void hub_drain_run(struct hub *h, struct hub_req *req)
{
	cJSON *o;

	if (req->instance[0] && strcmp(req->instance, h->node) != 0) {
		hub_answer_error(req, 404, "not_found", "no such node");
		return;
	}
	if (hub_drain_state(h) == HUB_SERVING) {
		atomic_store(&h->drain, HUB_DRAINING);
		h->drain_started_ms = clock_mono_ms();
		h->drain_closed = 0;
		log_info("draining", "links=%zu batch=%zu interval_ms=%lld",
			 active_links(h), h->drain_batch,
			 (long long)h->drain_interval_ms);
		lws_sul_schedule(h->ctx, 0, &h->drain_sul, step, 0);
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "node", h->node);
	cJSON_AddBoolToObject(o, "draining", true);
	cJSON_AddNumberToObject(o, "links", (double)active_links(h));
	cJSON_AddNumberToObject(o, "batch", (double)h->drain_batch);
	cJSON_AddNumberToObject(o, "interval_ms", (double)h->drain_interval_ms);
	hub_answer(req, 202, o);
}
