/*
 * webhook_def: the endpoints defined through the API (PUT
 * /api/discovery/webhooks/NAME, docs/webhooks.md "Run-time endpoints").
 *
 * Their definitions are the JSON bodies the API took, each checked as a
 * webhooks: entry of the config is (dconf_webhook_parse), and kept in a
 * journal of their own, state_dir/webhooks-api: one record
 * {"name":N,"webhook":{...}} per endpoint, the whole file rewritten
 * (temporary file, fsync, rename, fsync of the directory) at each change,
 * before the API answers. At start they are read again, checked again
 * (their secret files read anew) and opened after the config's entries.
 *
 * In cluster mode the definitions live in Redis instead (the backend's
 * defs_* calls, cluster_webhook.c), the same for every node: each node
 * looks at their revision at every renewal and takes up what changed
 * (wh_defs_sync), and a DELETE removes the definition with its keys, so
 * that the lease of a run-time endpoint can no longer be renewed or taken.
 *
 * The config's names are fixed: a PUT of one answers 409, and a stored
 * definition whose name the config now has is dropped (the config's entry
 * goes on from the same cursor). Everything here runs on the webhook
 * thread, but for wh_defs_load (before it starts).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/crypto.h>

#include "log.h"
#include "webhook_int.h"

#define DEFS_FILE "webhooks-api"

/* Rewrite the journal with defs, one record per endpoint. 0, or -1
 * (errno set; the file is as it was). */
static int defs_save(struct webhook *w, const cJSON *defs)
{
	char *records[DCONF_WEBHOOKS_MAX] = { 0 };
	const cJSON *d;
	size_t n = 0;
	int rc = 0;

	cJSON_ArrayForEach (d, defs) {
		cJSON *r = cJSON_CreateObject();

		if (n == DCONF_WEBHOOKS_MAX || !r ||
		    !cJSON_AddStringToObject(r, "name", d->string) ||
		    !cJSON_AddItemToObject(r, "webhook",
					   cJSON_Duplicate(d, true)) ||
		    !(records[n] = cJSON_PrintUnformatted(r))) {
			cJSON_Delete(r);
			rc = -1;
			errno = ENOMEM;
			break;
		}
		cJSON_Delete(r);
		n++;
	}
	if (rc == 0)
		rc = journal_rewrite(&w->defs_journal, records, n);
	for (size_t i = 0; i < n; i++)
		free(records[i]);
	return rc;
}

static struct wh_endpoint *find_any(struct webhook *w, const char *name)
{
	for (size_t i = 0; i < w->n_eps; i++)
		if (!w->eps[i].removed && strcmp(w->eps[i].name, name) == 0)
			return &w->eps[i];
	return NULL;
}

/* ep's state as its definition passes again (a PUT, a SIGHUP). */
static void mend(struct wh_endpoint *ep)
{
	if (!ep->broken)
		return;
	ep->broken = false;
	snprintf(ep->view.disabled_reason, sizeof(ep->view.disabled_reason),
		 "%s", ep->disabled ? ep->cursor.disabled : "");
	log_info("webhook definition passes again", "webhook=%s", ep->name);
}

/* Check and open one stored definition as the next endpoint. One that no
 * longer passes its checks (its secret file went bad since) is opened
 * broken: shown, not delivered, until it is fixed. */
static int load_one(struct webhook *w, const char *name, const cJSON *def,
		    char *err, size_t errlen)
{
	char *text = cJSON_PrintUnformatted(def), why[600], q[700];
	struct dconf_webhook conf;
	struct wh_endpoint *ep = &w->eps[w->n_eps];
	int rc = -1, parsed;

	if (!text) {
		snprintf(err, errlen, "%s/%s: out of memory", w->state_dir,
			 DEFS_FILE);
		return -1;
	}
	parsed = dconf_webhook_parse(text, strlen(text), DEFS_FILE, name, &conf,
				     why, sizeof(why));
	if (parsed == -2) { /* rows passed: url and the rest are there */
		OPENSSL_cleanse(conf.keys, sizeof(conf.keys));
		conf.n_keys = 0;
	}
	if (parsed == -1)
		snprintf(err, errlen, "%s/%s: webhooks.%s: %s", w->state_dir,
			 DEFS_FILE, name, why);
	else if (w->n_eps == DCONF_WEBHOOKS_MAX)
		snprintf(err, errlen, "%s/%s: more than %d webhooks",
			 w->state_dir, DEFS_FILE, DCONF_WEBHOOKS_MAX);
	else if (wh_endpoint_init(ep, name, &conf, w->state_dir, true, err,
				  errlen) == 0)
		rc = 0;
	if (rc == 0) {
		ep->runtime = true;
		w->n_eps++;
	}
	if (rc == 0 && parsed == -2) {
		ep->broken = true;
		snprintf(ep->view.disabled_reason,
			 sizeof(ep->view.disabled_reason), "%.159s", why);
		log_error("webhook definition does not pass",
			  "webhook=%s error=%s note=\"not delivered until a "
			  "PUT or a SIGHUP reads it whole\"",
			  name, log_quote(q, sizeof(q), why));
	}
	dconf_webhook_release(&conf);
	free(text);
	return rc;
}

/* Each record {"name":N,"webhook":{...}} into defs: 0, or -1. */
static int take_records(struct webhook *w, cJSON *records, char *err,
			size_t errlen)
{
	cJSON *r;

	cJSON_ArrayForEach (r, records) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(r, "name");
		cJSON *def =
			cJSON_DetachItemFromObjectCaseSensitive(r, "webhook");

		if (!cJSON_IsString(name) ||
		    !proto_valid_name(name->valuestring) ||
		    !cJSON_IsObject(def)) {
			cJSON_Delete(def);
			snprintf(err, errlen,
				 "%s/%s: a record is not "
				 "{\"name\":...,\"webhook\":{...}}",
				 w->state_dir, DEFS_FILE);
			return -1;
		}
		cJSON_DeleteItemFromObjectCaseSensitive(w->defs,
							name->valuestring);
		cJSON_AddItemToObject(w->defs, name->valuestring, def);
	}
	return 0;
}

int wh_defs_load(struct webhook *w, const struct dconf *conf, char *err,
		 size_t errlen)
{
	struct journal_damage damage;
	cJSON *records = NULL, *d, *next;
	bool dropped = false;

	if (!(w->defs = cJSON_CreateObject())) {
		snprintf(err, errlen, "webhooks: out of memory");
		return -1;
	}
	/* In cluster mode every node's config is the list (cluster_webhook
	 * .c): run-time definitions are refused, and none is read. */
	if (w->backend)
		return 0;
	if (journal_open_named(&w->defs_journal, conf->state_dir, DEFS_FILE,
			       &records, &damage, err, errlen) != 0 ||
	    take_records(w, records, err, errlen) != 0) {
		cJSON_Delete(records);
		return -1;
	}
	cJSON_Delete(records);
	for (d = w->defs->child; d; d = next) {
		next = d->next;
		if (find_any(w, d->string)) {
			log_warn("webhook definition dropped",
				 "webhook=%s note=\"discoveryd.yaml has it "
				 "now: its entry wins, from the same cursor\"",
				 d->string);
			cJSON_Delete(cJSON_DetachItemViaPointer(w->defs, d));
			dropped = true;
			continue;
		}
		if (load_one(w, d->string, d, err, errlen) != 0)
			return -1;
	}
	if (dropped && defs_save(w, w->defs) != 0)
		log_warn("webhook definitions not rewritten", "errno=%d",
			 errno);
	if (cJSON_GetArraySize(w->defs))
		log_info("webhooks defined at run time", "endpoints=%d",
			 cJSON_GetArraySize(w->defs));
	return 0;
}

/* defs with name's definition replaced by json (NULL: removed), stored:
 * in the journal, or in cluster mode in Redis (a new one, start, with its
 * cursor at the current seq). 0, or -1 (errno set; nothing changed). */
static int defs_store(struct webhook *w, const char *name, const char *json,
		      bool start)
{
	const struct webhook_backend *b = w->backend;
	cJSON *copy = cJSON_Duplicate(w->defs, true), *def = NULL;
	int rc;

	if (!copy || (json && !(def = cJSON_Parse(json)))) {
		cJSON_Delete(copy);
		errno = ENOMEM;
		return -1;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(copy, name);
	if (def)
		cJSON_AddItemToObject(copy, name, def);
	rc = b ? b->def_set(b->arg, name, json, start, w->epoch, w->latest) :
		 defs_save(w, copy);
	if (rc != 0) {
		int saved = b ? EIO : errno;

		cJSON_Delete(copy);
		errno = saved;
		return -1;
	}
	cJSON_Delete(w->defs);
	w->defs = copy;
	return 0;
}

int wh_defs_remove(struct webhook *w, const char *name)
{
	return defs_store(w, name, NULL, false);
}

/* From the log's current position: what the endpoint gets is what
 * follows (the config's new entry starts so, place_new). */
static void start_now(struct webhook *w, struct wh_endpoint *ep, int64_t now)
{
	if (!w->epoch[0])
		return; /* placed at the first mark, as the config's */
	snprintf(ep->epoch, sizeof(ep->epoch), "%s", w->epoch);
	ep->scanned = w->latest;
	wh_save_cursor(w, ep, ep->scanned, now);
}

/* ep on def from its cursor. What is on the wire is dropped (libcurl
 * lets go of it here) and sent again from the cursor, to the new URL,
 * signed with the new secrets: at-least-once, the same webhook-id. 0, or
 * -1 out of memory (ep as it was, but its window). */
static int swap_conf(struct webhook *w, struct wh_endpoint *ep,
		     const struct dconf_webhook *def)
{
	int rc;

	wh_test_done(w, ep, CURLE_OK, 409);
	wh_window_clear(w, ep);
	pthread_mutex_lock(&w->mu); /* the list reads url, max_in_flight */
	rc = wh_endpoint_set_conf(ep, def);
	pthread_mutex_unlock(&w->mu);
	snprintf(ep->epoch, sizeof(ep->epoch), "%s", ep->cursor.epoch);
	ep->scanned = ep->cursor.seq;
	return rc;
}

static void replace(struct webhook *w, struct wh_endpoint *ep, struct wh_cmd *c,
		    int64_t now)
{
	int rc;

	if (defs_store(w, ep->name, c->json, false) != 0) {
		c->status = w->backend ? 503 : 500;
		snprintf(c->msg, c->msglen,
			 "%s not written (%s): %s is unchanged",
			 w->backend ? "Redis" : DEFS_FILE, strerror(errno),
			 ep->name);
		return;
	}
	rc = swap_conf(w, ep, c->def);
	if (rc != 0) {
		c->status = 500;
		snprintf(c->msg, c->msglen,
			 "stored, but out of memory: %s is applied at the "
			 "next start",
			 ep->name);
		return;
	}
	mend(ep);
	if (c->fresh)
		start_now(w, ep, now);
	log_info("webhook replaced", "webhook=%s cursor=%llu", ep->name,
		 (unsigned long long)ep->cursor.seq);
	snprintf(c->msg, c->msglen, "%s",
		 c->fresh ? "replaced, from the current seq" :
			    "replaced, from its cursor");
}

/* A slot for a new endpoint: a deleted one's, else the next. */
static struct wh_endpoint *free_slot(struct webhook *w, size_t *index)
{
	for (size_t i = 0; i < w->n_eps; i++)
		if (w->eps[i].removed) {
			/* The list must not read it from here on. */
			pthread_mutex_lock(&w->mu);
			w->removed[i] = true;
			pthread_mutex_unlock(&w->mu);
			wh_endpoint_release(w, &w->eps[i]);
			*index = i;
			return &w->eps[i];
		}
	if (w->n_eps == DCONF_WEBHOOKS_MAX)
		return NULL;
	*index = w->n_eps;
	return &w->eps[w->n_eps];
}

/* The new endpoint in slot i, for the list and the loop. */
static void publish_new(struct webhook *w, struct wh_endpoint *ep, size_t i)
{
	ep->runtime = true;
	pthread_mutex_lock(&w->mu);
	ep->removed = false;
	w->removed[i] = false;
	w->views[i] = ep->view;
	if (i == w->n_eps)
		w->n_eps++;
	pthread_mutex_unlock(&w->mu);
	wh_update_active(w);
}

static void create(struct webhook *w, struct wh_cmd *c, int64_t now)
{
	char why[400];
	size_t i;
	struct wh_endpoint *ep = free_slot(w, &i);

	if (!ep) {
		c->status = 409;
		snprintf(c->msg, c->msglen,
			 "there are %d webhooks already, the limit",
			 DCONF_WEBHOOKS_MAX);
		return;
	}
	why[0] = '\0';
	/* Its start is the current seq: latest must be it (in cluster mode
	 * it goes to Redis with the definition). */
	wh_activate(w);
	if (wh_endpoint_init(ep, c->name, c->def, w->state_dir, !w->backend,
			     why, sizeof(why)) != 0 ||
	    defs_store(w, c->name, c->json, true) != 0) {
		if (!why[0])
			snprintf(why, sizeof(why), "%s not written (%s)",
				 w->backend ? "Redis" : DEFS_FILE,
				 strerror(errno));
		webhook_cursor_remove(&ep->cursor);
		ep->removed = true;
		wh_endpoint_release(w, ep);
		wh_update_active(w);
		c->status = 500;
		snprintf(c->msg, c->msglen, "%s", why);
		return;
	}
	ep->runtime = true;
	/* New, whatever a file left by an older endpoint of that name
	 * says: it starts at the current seq, enabled. */
	ep->cursor.found = false;
	ep->cursor.disabled[0] = '\0';
	ep->disabled = false;
	ep->view.disabled_reason[0] = '\0';
	publish_new(w, ep, i);
	/* In cluster mode the cursor was set with the definition. */
	if (!w->backend)
		start_now(w, ep, now);
	log_info("webhook created", "webhook=%s seq=%llu", ep->name,
		 (unsigned long long)ep->scanned);
	c->status = 201;
	snprintf(c->msg, c->msglen, "created, from the current seq");
}

/* A name webhooks: has, even if deleted until the next start (which
 * brings it back). */
static bool config_name(const struct webhook *w, const char *name)
{
	for (size_t i = 0; i < w->config_names.n; i++)
		if (strcmp(w->config_names.v[i], name) == 0)
			return true;
	return false;
}

void wh_defs_put(struct webhook *w, struct wh_cmd *c, int64_t now)
{
	struct wh_endpoint *ep = find_any(w, c->name);

	c->status = 200;
	if (config_name(w, c->name)) {
		c->status = 409;
		snprintf(c->msg, c->msglen,
			 "%s is defined in discoveryd.yaml: change it there "
			 "(the config's entries are fixed at run time)",
			 c->name);
	} else if (w->backend && !w->epoch[0]) {
		c->status = 503;
		snprintf(c->msg, c->msglen,
			 "this node does not follow the stream yet: again "
			 "soon");
	} else if (w->backend && ep && c->fresh && ep->standby) {
		c->status = 409;
		snprintf(c->msg, c->msglen,
			 "another node delivers %s: send start=now to the "
			 "node whose list shows it delivering",
			 c->name);
	} else if (ep) {
		replace(w, ep, c, now);
	} else {
		create(w, c, now);
	}
}

/* ---- cluster mode: the definitions in Redis ------------------------- */

void wh_defs_gone(struct webhook *w, struct wh_endpoint *ep)
{
	wh_test_done(w, ep, CURLE_OK, 409);
	wh_window_clear(w, ep);
	ep->removed = true;
	cJSON_DeleteItemFromObjectCaseSensitive(w->defs, ep->name);
	wh_update_active(w);
	log_info("webhook deleted", "webhook=%s note=\"on another node\"",
		 ep->name);
}

/* One definition another node stored: taken as the API's PUT takes it,
 * this node's files read (broken if they do not do here). */
static void sync_one(struct webhook *w, const char *name, const cJSON *d)
{
	char *text = cJSON_PrintUnformatted(d), why[600], q[700];
	struct wh_endpoint *ep = find_any(w, name);
	struct dconf_webhook def;
	size_t i;
	int parsed;

	if (!text)
		return;
	parsed = dconf_webhook_parse(text, strlen(text), "redis", name, &def,
				     why, sizeof(why));
	if (parsed == -2) {
		OPENSSL_cleanse(def.keys, sizeof(def.keys));
		def.n_keys = 0;
	}
	if (parsed == -1) {
		log_warn("webhook definition skipped", "webhook=%s error=%s",
			 name, log_quote(q, sizeof(q), why));
	} else if (ep) {
		if (swap_conf(w, ep, &def) == 0)
			log_info("webhook replaced",
				 "webhook=%s note=\"on another node\"", name);
	} else if (!(ep = free_slot(w, &i))) {
		log_warn("webhook definition skipped",
			 "webhook=%s error=\"%d webhooks already\"", name,
			 DCONF_WEBHOOKS_MAX);
	} else if (wh_endpoint_init(ep, name, &def, w->state_dir, false, why,
				    sizeof(why)) != 0) {
		ep->removed = true;
		wh_endpoint_release(w, ep);
		ep = NULL;
	} else {
		publish_new(w, ep, i);
		log_info("webhook created",
			 "webhook=%s note=\"on another node\"", name);
	}
	if (ep && parsed == -2) {
		ep->broken = true;
		snprintf(ep->view.disabled_reason,
			 sizeof(ep->view.disabled_reason), "%.159s", why);
		log_error("webhook definition does not pass",
			  "webhook=%s error=%s", name,
			  log_quote(q, sizeof(q), why));
	} else if (ep && parsed == 0) {
		mend(ep);
	}
	dconf_webhook_release(&def);
	free(text);
}

void wh_defs_sync(struct webhook *w, int64_t now)
{
	const struct webhook_backend *b = w->backend;
	cJSON *remote, *d;
	long long rev;

	if (!b || !b->defs_rev || now < w->defs_sync_ms || !w->epoch[0])
		return;
	w->defs_sync_ms = now + (b->renew_ms > 0 ? b->renew_ms : 1000);
	if (b->defs_rev(b->arg, &rev) != 0 || rev == w->defs_rev ||
	    !(remote = b->defs_get(b->arg)))
		return;
	for (size_t i = 0; i < w->n_eps; i++) {
		struct wh_endpoint *ep = &w->eps[i];

		if (!ep->removed && ep->runtime &&
		    !cJSON_GetObjectItemCaseSensitive(remote, ep->name))
			wh_defs_gone(w, ep);
	}
	cJSON_ArrayForEach (d, remote) {
		const cJSON *mine =
			cJSON_GetObjectItemCaseSensitive(w->defs, d->string);

		if (config_name(w, d->string) ||
		    (mine && cJSON_Compare(mine, d, true)))
			continue;
		sync_one(w, d->string, d);
	}
	cJSON_Delete(w->defs);
	w->defs = remote;
	w->defs_rev = rev;
}

/* The keys of one endpoint, read anew. */
static void take_keys(struct wh_endpoint *ep, const struct dconf_webhook *def)
{
	bool changed =
		ep->conf.n_keys != def->n_keys ||
		memcmp(ep->conf.keys, def->keys, sizeof(ep->conf.keys)) != 0;

	memcpy(ep->conf.keys, def->keys, sizeof(ep->conf.keys));
	ep->conf.n_keys = def->n_keys;
	if (changed)
		log_info("webhook secrets reloaded", "webhook=%s secrets=%zu",
			 ep->name, def->n_keys);
}

static void reload_runtime(struct webhook *w, struct wh_endpoint *ep)
{
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(w->defs, ep->name);
	char *text = d ? cJSON_PrintUnformatted(d) : NULL;
	struct dconf_webhook def;
	char why[600], q[700];

	if (!text)
		return;
	if (dconf_webhook_parse(text, strlen(text), DEFS_FILE, ep->name, &def,
				why, sizeof(why)) == 0) {
		take_keys(ep, &def);
		mend(ep);
	} else
		log_warn("webhook secrets kept", "webhook=%s error=%s",
			 ep->name, log_quote(q, sizeof(q), why));
	dconf_webhook_release(&def);
	free(text);
}

void wh_defs_reload_secrets(struct webhook *w, const struct dconf *conf)
{
	const struct dconf_webhook *items = conf->webhooks.items;

	for (size_t i = 0; i < w->n_eps; i++) {
		struct wh_endpoint *ep = &w->eps[i];

		if (ep->removed)
			continue;
		if (ep->runtime) {
			reload_runtime(w, ep);
			continue;
		}
		for (size_t k = 0; k < conf->webhooks.n; k++)
			if (strcmp(conf->webhooks.names[k], ep->name) == 0)
				take_keys(ep, &items[k]);
	}
}
