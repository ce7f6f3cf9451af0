/*
 * webhook_view: what other threads see of the webhooks (webhook.h): the
 * API's list and the /metrics families, both from the snapshot the
 * delivery thread publishes under its mutex.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <curl/curl.h>

#include "metrics.h"
#include "webhook_int.h"

/*
 * The URL as the API shows it: scheme, host and port only. Webhook URLs
 * often carry their credential (userinfo, a token in the query, the path
 * itself, as Slack's and Discord's do), and readers may list them.
 */
static bool add_url(cJSON *o, const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	char *query = NULL, text[512];
	bool more, ok;

	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(text, sizeof(text), "(hidden)");
	} else {
		curl_url_get(u, CURLUPART_PORT, &port, 0);
		curl_url_get(u, CURLUPART_PATH, &path, 0);
		curl_url_get(u, CURLUPART_QUERY, &query, 0);
		more = (path && strcmp(path, "/") != 0) || query;
		snprintf(text, sizeof(text), "%s://%s%s%s%s", scheme, host,
			 port ? ":" : "", port ? port : "",
			 more ? "/..." : "/");
	}
	ok = cJSON_AddStringToObject(o, "url", text) != NULL;
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	return ok;
}

static cJSON *endpoint_json(const struct wh_endpoint *ep,
			    const struct wh_view *v)
{
	cJSON *o = cJSON_CreateObject(), *by = cJSON_CreateObject();
	char seq[24];

	if (!o || !by) {
		cJSON_Delete(o);
		cJSON_Delete(by);
		return NULL;
	}
	cJSON_AddStringToObject(o, "name", ep->name);
	if (!add_url(o, ep->conf.url)) {
		cJSON_Delete(o);
		cJSON_Delete(by);
		return NULL;
	}
	cJSON_AddStringToObject(o, "source", ep->runtime ? "api" : "config");
	cJSON_AddStringToObject(o, "epoch", v->epoch);
	/* A seq goes out exact, as everywhere in the API. */
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)v->cursor);
	cJSON_AddItemToObject(o, "cursor", cJSON_CreateRaw(seq));
	cJSON_AddNumberToObject(o, "lag_events", (double)v->lag_events);
	cJSON_AddNumberToObject(o, "lag_ms", (double)v->lag_ms);
	cJSON_AddNumberToObject(o, "max_in_flight",
				(double)ep->conf.max_in_flight);
	cJSON_AddBoolToObject(o, "disabled", v->disabled);
	cJSON_AddBoolToObject(o, "delivering", !v->standby);
	if (v->standby && v->holder[0])
		cJSON_AddStringToObject(o, "holder", v->holder);
	if (v->disabled)
		cJSON_AddStringToObject(o, "disabled_reason",
					v->disabled_reason);
	if (v->last_attempt_wall_ms) {
		cJSON_AddNumberToObject(o, "last_status", v->last_status);
		if (v->last_error[0])
			cJSON_AddStringToObject(o, "last_error", v->last_error);
		cJSON_AddNumberToObject(o, "last_attempt_ms",
					(double)v->last_attempt_wall_ms);
	} else {
		cJSON_AddNullToObject(o, "last_status");
	}
	cJSON_AddNumberToObject(o, "failures", (double)v->failures);
	cJSON_AddNumberToObject(o, "delivered", (double)v->delivered);
	cJSON_AddNumberToObject(o, "retries", (double)v->retries);
	cJSON_AddNumberToObject(o, "resets", (double)v->resets);
	for (int c = 0; c < WH_CLASSES; c++)
		cJSON_AddNumberToObject(by, wh_class_name((enum wh_class)c),
					(double)v->by_class[c]);
	cJSON_AddItemToObject(o, "attempts", by);
	return o;
}

char *webhook_list_json(struct webhook *w)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(root, "webhooks");
	char *text;

	if (!root || !list) {
		cJSON_Delete(root);
		return NULL;
	}
	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n_eps; i++) {
		cJSON *o;

		if (w->removed[i])
			continue;
		o = endpoint_json(&w->eps[i], &w->views[i]);
		if (o)
			cJSON_AddItemToArray(list, o);
	}
	pthread_mutex_unlock(&w->mu);
	text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

size_t webhook_count(struct webhook *w)
{
	size_t n = 0;

	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n_eps; i++)
		n += !w->removed[i];
	pthread_mutex_unlock(&w->mu);
	return n;
}

#define EACH(w, i)                                                             \
	for (size_t i = 0; i < (w)->n_eps; i++)                                \
		if (!(w)->removed[i])

void webhook_metrics(struct webhook *w, struct metrics_text *t)
{
	char name[PROTO_NAME_MAX * 2 + 8], label[PROTO_NAME_MAX * 2 + 64];
	size_t disabled = 0;

	pthread_mutex_lock(&w->mu);
	metrics_family(t, "discovery_webhook_attempts_total", "counter",
		       "Webhook delivery attempts, by endpoint and outcome "
		       "(2xx, 3xx, 4xx, 410, 429, 5xx, timeout, error).");
	EACH(w, i)
	{
		metrics_label(name, sizeof(name), w->eps[i].name);
		for (int c = 0; c < WH_CLASSES; c++) {
			snprintf(label, sizeof(label),
				 "webhook=\"%s\",status=\"%s\"", name,
				 wh_class_name((enum wh_class)c));
			metrics_sample(t, "discovery_webhook_attempts_total",
				       label, (double)w->views[i].by_class[c]);
		}
	}
#define FAMILY(metric, type, help, field)                                      \
	metrics_family(t, metric, type, help);                                 \
	EACH(w, i)                                                             \
	{                                                                      \
		metrics_label(name, sizeof(name), w->eps[i].name);             \
		snprintf(label, sizeof(label), "webhook=\"%s\"", name);        \
		metrics_sample(t, metric, label, (double)(field));             \
	}
	FAMILY("discovery_webhook_delivered_total", "counter",
	       "Events (and reset notices) a receiver acknowledged with "
	       "a 2xx.",
	       w->views[i].delivered)
	FAMILY("discovery_webhook_retries_total", "counter",
	       "Attempts scheduled again after a failure.", w->views[i].retries)
	FAMILY("discovery_webhook_resets_total", "counter",
	       "Reset notices: the endpoint fell behind past the history.",
	       w->views[i].resets)
	FAMILY("discovery_webhook_lag_events", "gauge",
	       "Events the log holds past what the endpoint acknowledged.",
	       w->views[i].lag_events)
	FAMILY("discovery_webhook_lag_seconds", "gauge",
	       "Age of the oldest event not yet acknowledged.",
	       (double)w->views[i].lag_ms / 1000.0)
	FAMILY("discovery_webhook_disabled", "gauge",
	       "1 when the endpoint is disabled (410, or retry.max_age).",
	       w->views[i].disabled ? 1 : 0)
#undef FAMILY
	EACH(w, i) disabled += w->views[i].disabled;
	metrics_family(t, "discovery_webhook_disabled_endpoints", "gauge",
		       "Webhook endpoints disabled.");
	metrics_sample(t, "discovery_webhook_disabled_endpoints", NULL,
		       (double)disabled);
	metrics_family(t, "discovery_webhook_inbox_dropped_total", "counter",
		       "Events the delivery thread was too far behind to take "
		       "(the endpoints got a reset).");
	metrics_sample(t, "discovery_webhook_inbox_dropped_total", NULL,
		       (double)atomic_load(&w->inbox_dropped));
	pthread_mutex_unlock(&w->mu);
}
