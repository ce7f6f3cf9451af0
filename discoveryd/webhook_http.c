/*
 * webhook_http: one delivery attempt on libcurl's multi interface. The
 * POST carries the event's frame as agents receive it, and the Standard
 * Webhooks headers: webhook-id (stable across attempts), webhook-timestamp
 * (this attempt's) and webhook-signature over both and the body. Redirects
 * are not followed, only http and https are spoken, the answer's body is
 * read up to WEBHOOK_BODY_MAX and dropped.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "webhook_int.h"
#include "webhook_sign.h"

#define RETRY_AFTER_MAX_S (INT64_C(31) * 24 * 3600)

static const char *const class_names[WH_CLASSES] = {
	[WH_2XX] = "2xx",         [WH_3XX] = "3xx",     [WH_4XX] = "4xx",
	[WH_410] = "410",         [WH_429] = "429",     [WH_5XX] = "5xx",
	[WH_TIMEOUT] = "timeout", [WH_ERROR] = "error",
};

const char *wh_class_name(enum wh_class c)
{
	return class_names[c];
}

/* The answer's body: counted, dropped, and cut off past the cap. */
static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct wh_slot *s = arg;

	(void)data;
	s->read += size * n;
	if (s->read > WEBHOOK_BODY_MAX) {
		s->capped = true;
		return 0; /* CURLE_WRITE_ERROR: the status is known */
	}
	return size * n;
}

/* Append "name: value" (name NULL: value as it is); on failure the list
 * is freed and NULL returned, so a chain of calls stops at the first. */
static struct curl_slist *add_header(struct curl_slist *l, bool first,
				     const char *name, const char *value)
{
	char line[WEBHOOK_SIG_MAX + 64];
	struct curl_slist *n;

	if (!l && !first)
		return NULL;
	if (name)
		snprintf(line, sizeof(line), "%s: %s", name, value);
	else
		snprintf(line, sizeof(line), "%s", value);
	n = curl_slist_append(l, line);
	if (!n)
		curl_slist_free_all(l);
	return n;
}

static struct curl_slist *headers_for(const struct wh_slot *s,
				      const struct dconf_webhook *conf)
{
	char sig[WEBHOOK_SIG_MAX], ts[24];
	int64_t now = clock_wall_ms() / 1000;
	struct curl_slist *l;

	if (webhook_sign(conf->keys, conf->n_keys, s->id, now, s->ev->body,
			 s->ev->len, sig, sizeof(sig)) != 0)
		return NULL;
	snprintf(ts, sizeof(ts), "%lld", (long long)now);
	l = add_header(NULL, true, "Content-Type", "application/json");
	l = add_header(l, false, "webhook-id", s->id);
	l = add_header(l, false, "webhook-timestamp", ts);
	l = add_header(l, false, "webhook-signature", sig);
	l = add_header(l, false, "User-Agent", "discoveryd/" DISCOVERY_VERSION);
	/* No "Expect: 100-continue" round trip before larger bodies. */
	return add_header(l, false, NULL, "Expect:");
}

int wh_http_start(struct webhook *w, struct wh_slot *s)
{
	const struct dconf_webhook *conf = &s->ep->conf;
	CURL *e = curl_easy_init();
	long timeout = (long)conf->timeout_ms;

	if (s == &s->ep->test && timeout > WEBHOOK_TEST_TIMEOUT_MS)
		timeout = WEBHOOK_TEST_TIMEOUT_MS;

	s->headers = e ? headers_for(s, conf) : NULL;
	if (!s->headers) {
		if (e)
			curl_easy_cleanup(e);
		return -1;
	}
	curl_easy_setopt(e, CURLOPT_URL, conf->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)s->ev->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
			 (curl_off_t)s->ev->len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(e, CURLOPT_PRIVATE, s);
	if (conf->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, conf->ca_file);
	s->read = 0;
	s->capped = false;
	if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
		curl_slist_free_all(s->headers);
		s->headers = NULL;
		curl_easy_cleanup(e);
		return -1;
	}
	s->easy = e;
	s->state = SLOT_SENDING;
	return 0;
}

static void drop_handle(struct webhook *w, struct wh_slot *s)
{
	if (s->easy) {
		curl_multi_remove_handle(w->multi, s->easy);
		curl_easy_cleanup(s->easy);
	}
	curl_slist_free_all(s->headers);
	s->easy = NULL;
	s->headers = NULL;
}

static enum wh_class class_of(long status)
{
	if (status >= 200 && status < 300)
		return WH_2XX;
	if (status == 410)
		return WH_410;
	if (status == 429)
		return WH_429;
	if (status >= 500)
		return WH_5XX;
	return status >= 300 && status < 400 ? WH_3XX : WH_4XX;
}

void wh_http_finish(struct webhook *w, struct wh_slot *s, CURLcode rc,
		    struct wh_result *r)
{
	long status = 0;
	curl_off_t retry_after = 0;

	memset(r, 0, sizeof(*r));
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	/* A body past the cap was cut by us: its status stands. */
	if (rc == CURLE_OK ||
	    (rc == CURLE_WRITE_ERROR && s->capped && status)) {
		r->status = (int)status;
		r->cls = class_of(status);
		if ((r->cls == WH_429 || r->cls == WH_5XX) &&
		    curl_easy_getinfo(s->easy, CURLINFO_RETRY_AFTER,
				      &retry_after) == CURLE_OK &&
		    retry_after > 0)
			/* Past retry.max_age (at most 30 days) any value
			 * disables: cap it before it overflows. */
			r->retry_after_ms = retry_after > RETRY_AFTER_MAX_S ?
						    RETRY_AFTER_MAX_S * 1000 :
						    (int64_t)retry_after * 1000;
		if (r->cls == WH_3XX)
			snprintf(r->error, sizeof(r->error),
				 "HTTP %ld: redirects are not followed",
				 status);
		else if (r->cls != WH_2XX)
			snprintf(r->error, sizeof(r->error), "HTTP %ld",
				 status);
	} else {
		/* An answer cut short counts as none: the event goes again,
		 * with its id. */
		r->status = (int)status;
		r->cls = rc == CURLE_OPERATION_TIMEDOUT ? WH_TIMEOUT : WH_ERROR;
		snprintf(r->error, sizeof(r->error), "%s",
			 curl_easy_strerror(rc));
	}
	drop_handle(w, s);
}

void wh_http_abort(struct webhook *w, struct wh_slot *s)
{
	drop_handle(w, s);
}
