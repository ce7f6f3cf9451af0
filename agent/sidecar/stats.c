/*
 * stats: see stats.h. The names follow discoveryd's /metrics
 * (discovery_*, docs/operations.md) under discovery_agent_: a sidecar's
 * series and the daemon's never share a name. No series has a service or
 * instance label: discoveryd's Prometheus discovery gives the scraped
 * sidecar those as target labels (docs/api.md), and a series that had
 * them too would see its own renamed exported_service, exported_instance.
 * So a dependency is dependency="NAME", and the info series says
 * agent_service, agent_instance.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "metrics.h"
#include "stats.h"

/* An escaped label value: every byte of 128 may double, and the quotes. */
#define LABEL_MAX (2 * 129 + 8)

struct stats {
	agent_t *agent;
	unsigned hooks_set;
	atomic_uint_least64_t unlinks;          /* welcomed links that ended */
	atomic_uint_least64_t connect_failures; /* attempts without a welcome */
	size_t n_deps;
	/* Per dependency, in agent_dependency_name order: when it was last
	 * seen ready (wall clock, ms); 0: not since the sidecar started. */
	atomic_int_least64_t last_ready_ms[];
};

struct stats *stats_new(agent_t *a, unsigned hooks_set)
{
	size_t n = agent_dependency_count(a);
	struct stats *st =
		calloc(1, sizeof(*st) + n * sizeof(st->last_ready_ms[0]));

	if (!st)
		return NULL;
	st->agent = a;
	st->hooks_set = hooks_set;
	st->n_deps = n;
	return st;
}

void stats_free(struct stats *st)
{
	free(st);
}

void stats_link(struct stats *st, enum agent_link_state state,
		const struct agent_link_info *info)
{
	if (!st || state != AGENT_LINK_UNLINKED)
		return;
	atomic_fetch_add_explicit(info->was_linked ? &st->unlinks :
						     &st->connect_failures,
				  1, memory_order_relaxed);
}

static long dep_index(const struct stats *st, const char *service)
{
	for (size_t i = 0; i < st->n_deps; i++)
		if (!strcmp(agent_dependency_name(st->agent, i), service))
			return (long)i;
	return -1;
}

void stats_readiness(struct stats *st, const char *service, bool ready)
{
	long i = st ? dep_index(st, service) : -1;

	/* Ready until now either way: it turned, or it turns ready now. */
	(void)ready;
	if (i >= 0)
		atomic_store(&st->last_ready_ms[i], clock_wall_ms());
}

static void gauge(struct metrics_text *t, const char *name, const char *help,
		  double value)
{
	metrics_family(t, name, "gauge", help);
	metrics_sample(t, name, NULL, value);
}

static void counter(struct metrics_text *t, const char *name, const char *help,
		    double value)
{
	metrics_family(t, name, "counter", help);
	metrics_sample(t, name, NULL, value);
}

static void own(struct metrics_text *t, const struct agent_info *info,
		bool draining, bool ready, const struct hooks_status *hs)
{
	char service[LABEL_MAX], instance[LABEL_MAX], labels[3 * LABEL_MAX];

	metrics_family(t, "discovery_agent_info", "gauge",
		       "1, labelled with this instance's service and id and "
		       "the sidecar's version.");
	snprintf(labels, sizeof(labels),
		 "agent_service=\"%s\",agent_instance=\"%s\","
		 "version=\"%s\"",
		 metrics_label(service, sizeof(service), info->service),
		 metrics_label(instance, sizeof(instance), info->instance),
		 DISCOVERY_VERSION);
	metrics_sample(t, "discovery_agent_info", labels, 1);
	gauge(t, "discovery_agent_ready",
	      "1 when /ready answers 200: every dependency ready, no reset "
	      "pending, not draining.",
	      ready);
	gauge(t, "discovery_agent_draining",
	      "1 from SIGTERM on, while the sidecar drains.", draining);
	gauge(t, "discovery_agent_reset_pending",
	      "1 until on_reset has run after a reset (/ready answers 503).",
	      hs->reset_pending);
}

static void dependencies(struct stats *st, struct metrics_text *t)
{
	const char *ready = "discovery_agent_dependency_ready";
	const char *last =
		"discovery_agent_dependency_last_ready_timestamp_seconds";
	int64_t now = clock_wall_ms();
	char label[LABEL_MAX + 16];

	metrics_family(t, ready, "gauge",
		       "1 while the dependency is ready, as the agent mirrors "
		       "it.");
	for (size_t i = 0; i < st->n_deps; i++) {
		const char *name = agent_dependency_name(st->agent, i);

		/* Names are [a-z0-9_.-]: nothing to escape. */
		snprintf(label, sizeof(label), "dependency=\"%s\"", name);
		metrics_sample(t, ready, label,
			       agent_is_ready(st->agent, name));
	}
	metrics_family(t, last, "gauge",
		       "When the dependency was last seen ready (now while it "
		       "is; 0: not since the sidecar started).");
	for (size_t i = 0; i < st->n_deps; i++) {
		const char *name = agent_dependency_name(st->agent, i);

		if (agent_is_ready(st->agent, name))
			atomic_store(&st->last_ready_ms[i], now);
		snprintf(label, sizeof(label), "dependency=\"%s\"", name);
		metrics_sample(t, last, label,
			       (double)atomic_load(&st->last_ready_ms[i]) /
				       1000.0);
	}
}

static void link_stats(struct stats *st, struct metrics_text *t,
		       const struct agent_info *info)
{
	char node[LABEL_MAX], label[LABEL_MAX + 16];

	gauge(t, "discovery_agent_linked",
	      "1 while the daemon has welcomed the current link.",
	      info->linked);
	if (info->node[0]) {
		metrics_family(t, "discovery_agent_node_info", "gauge",
			       "1, labelled with the daemon node of the last "
			       "welcome.");
		snprintf(label, sizeof(label), "node=\"%s\"",
			 metrics_label(node, sizeof(node), info->node));
		metrics_sample(t, "discovery_agent_node_info", label, 1);
	}
	counter(t, "discovery_agent_links_total",
		"Welcomes received: links made.", (double)info->links);
	counter(t, "discovery_agent_unlinks_total",
		"Welcomed links that ended (the agent links again).",
		(double)atomic_load(&st->unlinks));
	counter(t, "discovery_agent_connect_failures_total",
		"Connection attempts that ended before a welcome.",
		(double)atomic_load(&st->connect_failures));
	gauge(t, "discovery_agent_link_attempts",
	      "Connection attempts since the last welcome.",
	      (double)info->attempt);
	counter(t, "discovery_agent_events_total",
		"Events received from the daemon.", (double)info->events);
	gauge(t, "discovery_agent_event_seq", "The last event seq seen.",
	      (double)info->seq);
}

static void hook_stats(struct stats *st, struct metrics_text *t,
		       const struct hooks_status *hs)
{
	const char *runs = "discovery_agent_hook_runs_total";
	char label[96];

	metrics_family(t, runs, "counter",
		       "Hook runs that ended, by hook and result (ok, failed, "
		       "signal, timeout, cancelled, error).");
	for (size_t k = 0; k < HOOK_KINDS; k++)
		for (size_t r = 0; r < HOOK_RESULTS; r++) {
			/* A hook not configured shows the runs it had: none,
			 * unless a bug ran one. */
			if (!(st->hooks_set & (1u << k)) && !hs->runs[k][r])
				continue;
			snprintf(label, sizeof(label),
				 "hook=\"%s\",result=\"%s\"",
				 hook_kind_names[k], hook_result_names[r]);
			metrics_sample(t, runs, label, (double)hs->runs[k][r]);
		}
	gauge(t, "discovery_agent_hooks_waiting", "Hook runs queued now.",
	      (double)hs->waiting);
	counter(t, "discovery_agent_hooks_dropped_total",
		"Hook runs dropped from a full queue (or for a reset).",
		(double)hs->dropped);
}

char *stats_text(struct stats *st, const struct hooks_status *hs, bool draining,
		 bool ready)
{
	struct agent_info info;
	struct metrics_text t;

	if (agent_info(st->agent, &info))
		return NULL;
	metrics_text_init(&t);
	own(&t, &info, draining, ready, hs);
	dependencies(st, &t);
	link_stats(st, &t, &info);
	hook_stats(st, &t, hs);
	return metrics_text_finish(&t);
}
