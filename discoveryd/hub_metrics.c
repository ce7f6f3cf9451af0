/*
 * hub_metrics: the hub's part of /metrics, written on the hub thread from
 * the state it owns (links, registry, log) and its counters. The HTTP API
 * adds its own request counters after it (api.c).
 */
#include <stdio.h>

#include "hub_int.h"

static const char *const close_names[CLOSE_KINDS] = {
	[CLOSE_GONE] = "gone",
	[CLOSE_PEER] = "peer",
	[CLOSE_HEARTBEAT] = "heartbeat",
	[CLOSE_HELLO_TIMEOUT] = "hello_timeout",
	[CLOSE_REPLACED] = "replaced",
	[CLOSE_POLICY] = "policy",
	[CLOSE_INVALID] = "invalid",
	[CLOSE_TOO_BIG] = "too_big",
	[CLOSE_SEND_QUEUE] = "send_queue",
	[CLOSE_LIMIT] = "limit",
	[CLOSE_STOPPING] = "stopping",
	[CLOSE_INTERNAL] = "internal",
	[CLOSE_WRITE_FAILED] = "write_failed",
	[CLOSE_TOKEN] = "token",
	[CLOSE_DRAIN] = "drain",
};

static void services(struct metrics_text *t, const struct registry *r)
{
	char label[160], esc[140];

	metrics_family(t, "discovery_agents_connected", "gauge",
		       "Linked agent instances, by service.");
	for (size_t i = 0; i < r->n; i++) {
		snprintf(label, sizeof(label), "service=\"%s\"",
			 metrics_label(esc, sizeof(esc), r->services[i]->name));
		metrics_sample(t, "discovery_agents_connected", label,
			       r->services[i]->instances);
	}
	metrics_family(t, "discovery_service_ready", "gauge",
		       "1 when the service is ready (as last announced).");
	for (size_t i = 0; i < r->n; i++) {
		snprintf(label, sizeof(label), "service=\"%s\"",
			 metrics_label(esc, sizeof(esc), r->services[i]->name));
		metrics_sample(t, "discovery_service_ready", label,
			       r->services[i]->ready);
	}
}

static void links(struct metrics_text *t, const struct hub *h)
{
	char label[64];

	metrics_family(t, "discovery_links", "gauge",
		       "Open agent links, before and after hello.");
	metrics_sample(t, "discovery_links", NULL, (double)h->n_links);
	metrics_family(t, "discovery_links_opened_total", "counter",
		       "Agent links opened (upgraded).");
	metrics_sample(t, "discovery_links_opened_total", NULL,
		       (double)h->stats.links_opened);
	metrics_family(t, "discovery_links_closed_total", "counter",
		       "Agent links closed or dropped, by reason.");
	for (int k = 0; k < CLOSE_KINDS; k++) {
		snprintf(label, sizeof(label), "reason=\"%s\"", close_names[k]);
		metrics_sample(t, "discovery_links_closed_total", label,
			       (double)h->stats.closed[k]);
	}
	metrics_family(t, "discovery_send_queue_drops_total", "counter",
		       "Links closed because their send queue passed "
		       "limits.send_queue.");
	metrics_sample(t, "discovery_send_queue_drops_total", NULL,
		       (double)h->stats.closed[CLOSE_SEND_QUEUE]);
	metrics_family(t, "discovery_node_draining", "gauge",
		       "1 while this node is drained or being drained.");
	metrics_sample(t, "discovery_node_draining", NULL,
		       hub_drain_state(h) != HUB_SERVING);
	metrics_family(t, "discovery_accepts_refused_total", "counter",
		       "Agent connections refused at the accept, or cut before "
		       "their upgrade, by reason.");
	for (int k = 0; k < REFUSED_KINDS; k++) {
		snprintf(label, sizeof(label), "reason=\"%s\"",
			 link_admit_refusal_name((enum admit_refusal)k));
		metrics_sample(t, "discovery_accepts_refused_total", label,
			       (double)h->refused[k].total);
	}
}

static void events(struct metrics_text *t, const struct hub *h)
{
	char label[64];

	metrics_family(t, "discovery_events_total", "counter",
		       "Events logged and fanned out, by kind.");
	for (int k = EVENT_READINESS; k <= EVENT_COMMAND; k++) {
		snprintf(label, sizeof(label), "kind=\"%s\"",
			 event_kind_name((enum event_kind)k));
		metrics_sample(t, "discovery_events_total", label,
			       (double)h->stats.events[k]);
	}
	metrics_family(t, "discovery_event_seq", "gauge",
		       "The last seq the log assigned.");
	metrics_sample(t, "discovery_event_seq", NULL, (double)h->log.seq);
	metrics_family(t, "discovery_history_events", "gauge",
		       "Events retained for resume.");
	metrics_sample(t, "discovery_history_events", NULL,
		       (double)h->log.count);
	metrics_histogram(t, "discovery_delivery_seconds",
			  "From an event's trigger to its frame in each link's "
			  "socket.",
			  &h->stats.delivery);
}

static void journal(struct metrics_text *t, const struct hub *h)
{
	metrics_histogram(t, "discovery_journal_fsync_seconds",
			  "Journal append, or group commit: from its first "
			  "write to the end of its fdatasync.",
			  &h->log.journal.fsync);
	metrics_family(t, "discovery_journal_commits_total", "counter",
		       "Group commits: fdatasyncs shared by the calls of one "
		       "pass.");
	metrics_sample(t, "discovery_journal_commits_total", NULL,
		       (double)h->log.journal.commits);
	metrics_family(t, "discovery_journal_committed_records_total",
		       "counter", "Records made durable by group commits.");
	metrics_sample(t, "discovery_journal_committed_records_total", NULL,
		       (double)h->log.journal.committed);
	metrics_family(t, "discovery_journal_failures_total", "counter",
		       "Appends that could not be made durable (answered "
		       "503).");
	metrics_sample(t, "discovery_journal_failures_total", NULL,
		       (double)h->log.journal.failures);
	metrics_family(t, "discovery_journal_bytes", "gauge",
		       "Size of the journal file.");
	metrics_sample(t, "discovery_journal_bytes", NULL,
		       (double)h->log.journal.size);
}

/* Both stores keep Idempotency-Keys; they say how many (store_ops.metrics). */
void hub_metrics_idempotency(struct metrics_text *t, uint64_t replays,
			     size_t keys, uint64_t evicted)
{
	metrics_family(t, "discovery_idempotent_replays_total", "counter",
		       "Writes answered with the first answer of their "
		       "Idempotency-Key.");
	metrics_sample(t, "discovery_idempotent_replays_total", NULL,
		       (double)replays);
	metrics_family(t, "discovery_idempotency_keys", "gauge",
		       "Idempotency keys kept (idempotency.max_keys at most).");
	metrics_sample(t, "discovery_idempotency_keys", NULL, (double)keys);
	metrics_family(t, "discovery_idempotency_evicted_total", "counter",
		       "Idempotency keys dropped before their retention "
		       "because idempotency.max_keys was reached.");
	metrics_sample(t, "discovery_idempotency_evicted_total", NULL,
		       (double)evicted);
}

char *hub_metrics_text(struct hub *h)
{
	struct metrics_text t;

	metrics_text_init(&t);
	services(&t, &h->registry);
	links(&t, h);
	events(&t, h);
	journal(&t, h);
	h->store->ops->metrics(h->store, &t);
	return metrics_text_finish(&t);
}
