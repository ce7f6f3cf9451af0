/*
 * cluster_peers: the other nodes' endpoints, for this node's sets (hub_ep.c;
 * docs/cluster.md, "Endpoints"). Each node's writer reports its agents to
 * Redis and moves the service's endpoint index (P.."eindex"); the sweep of
 * a dead node moves the indexes of its services. This thread reads that
 * hash every ENDPOINTS_POLL_MS on a connection of its own and, for each
 * service whose index moved, fetches the other live nodes' agents of it
 * (script op endpoints) and hands them to the hub, which publishes the
 * service's set anew when it differs. So another node's change reaches
 * this node's watchers within a poll (and its writer's report), a dead
 * node's endpoints leave within the node TTL plus a poll, and Redis away
 * leaves the last sets known standing.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster_int.h"
#include "hub_int.h"
#include "log.h"

#define ENDPOINTS_POLL_MS 100

/* A service's index as last fetched. */
struct seen {
	struct hnode node;
	long long index;
	char name[PROTO_NAME_MAX + 1];
};

/* What the hub takes: service's remote agents (parsed objects). */
struct remote {
	const char *service;
	cJSON *agents;
};

/* ---- on the hub thread -------------------------------------------------- */

static const char *str_of(const cJSON *o, const char *key)
{
	const char *s =
		cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return s ? s : "";
}

/* An agent object (hub_agent_json's shape, maybe an older node's) as an
 * endpoint; false when it is none (no valid address, another service). */
static bool ep_of(const cJSON *a, const char *service, struct ep *e,
		  const char **tags, char **meta)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(a, "weight");
	const cJSON *load = cJSON_GetObjectItemCaseSensitive(a, "load");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(a, "meta");
	const cJSON *t;
	const char *state = str_of(a, "state");
	int st;

	memset(e, 0, sizeof(*e));
	if (strcmp(str_of(a, "service"), service) != 0 ||
	    !proto_valid_address(str_of(a, "address")) ||
	    !proto_valid_instance(str_of(a, "instance")))
		return false;
	e->instance = str_of(a, "instance");
	e->address = str_of(a, "address");
	e->node = str_of(a, "node");
	if (!state[0]) /* an older node's agent: ready alone */
		state = cJSON_IsTrue(
				cJSON_GetObjectItemCaseSensitive(a, "ready")) ?
				"ready" :
				"notready";
	st = proto_state_parse(state);
	e->state = st < 0 ? PROTO_STATE_NOTREADY : (enum proto_state)st;
	e->weight = cJSON_IsNumber(w) && w->valuedouble >= PROTO_WEIGHT_MIN &&
				    w->valuedouble <= PROTO_WEIGHT_MAX ?
			    (unsigned)w->valuedouble :
			    PROTO_WEIGHT_DEFAULT;
	e->load = cJSON_IsNumber(load) && load->valuedouble >= 0 &&
				  load->valuedouble <= 1 ?
			  (int)(load->valuedouble * LINK_LOAD_SCALE + 0.5) :
			  -1;
	e->tags = tags;
	cJSON_ArrayForEach (t, cJSON_GetObjectItemCaseSensitive(a, "tags"))
		if (cJSON_IsString(t) && proto_valid_name(t->valuestring) &&
		    e->n_tags < PROTO_TAGS_MAX)
			tags[e->n_tags++] = t->valuestring;
	*meta = cJSON_IsObject(m) ? cJSON_PrintUnformatted(m) : NULL;
	e->meta = *meta;
	return true;
}

static void take_remote(struct hub *h, void *arg, struct hub_req *req)
{
	struct remote *r = arg;
	size_t n = (size_t)cJSON_GetArraySize(r->agents), k = 0;
	struct ep *eps = calloc(n ? n : 1, sizeof(*eps));
	const char **tags = calloc(n * PROTO_TAGS_MAX + 1, sizeof(*tags));
	char **metas = calloc(n ? n : 1, sizeof(*metas));
	struct service *s;
	struct epset *set = NULL;
	const cJSON *a;

	req->status = 200;
	if (!eps || !tags || !metas)
		goto out;
	cJSON_ArrayForEach (a, r->agents)
		if (ep_of(a, r->service, &eps[k], tags + k * PROTO_TAGS_MAX,
			  &metas[k]))
			k++;
	s = k ? registry_get(&h->registry, r->service) :
		registry_find(&h->registry, r->service);
	if (!s)
		goto out;
	if (k && !(set = epset_new(r->service, 0, eps, k)))
		goto out;
	epset_put(s->ep_remote);
	s->ep_remote = set;
	hub_endpoints_moved(h, s); /* released at the flush if unused */
out:
	for (size_t i = 0; metas && i < n; i++)
		cJSON_free(metas[i]);
	free(metas);
	free(tags);
	free(eps);
}

/* ---- on this thread ----------------------------------------------------- */

static struct seen *seen_get(struct htab *t, const char *name, bool add)
{
	uint64_t hv = htab_hash(t, name);
	struct seen *s;

	for (struct hnode *n = htab_first(t, hv); n; n = htab_next(n, hv))
		if (!strcmp((s = htab_entry(n, struct seen, node))->name, name))
			return s;
	if (!add || strlen(name) > PROTO_NAME_MAX ||
	    !(s = calloc(1, sizeof(*s))))
		return NULL;
	s->index = -1;
	snprintf(s->name, sizeof(s->name), "%s", name);
	if (htab_add(t, &s->node, hv) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

static void seen_clear(struct htab *t)
{
	struct hnode *n;

	while ((n = htab_pop(t)))
		free(htab_entry(n, struct seen, node));
}

/* Fetch service's remote agents and hand them over. 0, -1: Redis. */
static int fetch(struct cluster *c, redisContext *ctx, const char *service)
{
	const char *args[1] = { service };
	redisReply *r = cluster_script(c, ctx, 0, "endpoints", 1, args);
	struct remote rem = { .service = service };
	struct hub_req req = { .op = HUB_JOB };
	cJSON *o, *texts, *t;

	if (!r || ctx->err) {
		freeReplyObject(r);
		return -1;
	}
	o = r->type == REDIS_REPLY_STRING ?
		    cJSON_ParseWithLength(r->str, r->len) :
		    NULL;
	freeReplyObject(r);
	if (!o)
		return 0; /* an error reply: again at the next move */
	texts = cJSON_GetObjectItemCaseSensitive(o, "agents");
	rem.agents = cJSON_CreateArray();
	cJSON_ArrayForEach (t, texts) {
		cJSON *a = cJSON_IsString(t) ? cJSON_Parse(t->valuestring) :
					       NULL;

		if (a && !cJSON_AddItemToArray(rem.agents, a))
			cJSON_Delete(a);
	}
	cJSON_Delete(o);
	if (rem.agents)
		hub_run(c->hub, take_remote, &rem, &req);
	free(req.body);
	cJSON_Delete(rem.agents);
	return 0;
}

/* One poll: every service whose index moved since it was fetched. */
static int poll_once(struct cluster *c, redisContext *ctx, struct htab *seen)
{
	char key[CLUSTER_KEY_MAX];
	redisReply *r;
	int rc = 0;

	snprintf(key, sizeof(key), "%seindex", c->prefix);
	r = cluster_check(ctx, redisCommand(ctx, "HGETALL %s", key));
	if (!r || ctx->err || r->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		return -1;
	}
	for (size_t i = 0; rc == 0 && i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		struct seen *s;
		long long index;

		if (k->type != REDIS_REPLY_STRING ||
		    v->type != REDIS_REPLY_STRING || !proto_valid_name(k->str))
			continue;
		index = strtoll(v->str, NULL, 10);
		if (!(s = seen_get(seen, k->str, true)) || s->index == index)
			continue;
		if ((rc = fetch(c, ctx, k->str)) == 0)
			s->index = index;
	}
	freeReplyObject(r);
	return rc;
}

/* Until ms have passed or the cluster stops. */
static void nap(struct cluster *c, int64_t ms)
{
	struct timespec until = clock_mono_ts(clock_mono_ms() + ms);

	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&c->stop) &&
	       pthread_cond_timedwait(&c->peers_cv, &c->mu, &until) == 0)
		;
	pthread_mutex_unlock(&c->mu);
}

void *cluster_peers_main(void *arg)
{
	struct cluster *c = arg;
	redisContext *ctx = NULL;
	struct backoff retry;
	struct htab seen;

	htab_init(&seen, true);
	backoff_init(&retry, RETRY_MIN_MS, RETRY_MAX_MS, 2.0, 0);
	while (!atomic_load(&c->stop)) {
		if (!ctx && !(ctx = cluster_connect(c, "endpoints"))) {
			cluster_backoff(c, &retry);
			continue;
		}
		if (poll_once(c, ctx, &seen) != 0) {
			if (!atomic_load(&c->stop))
				log_warn("cluster redis lost",
					 "role=endpoints error=\"%s\"",
					 ctx->err ? ctx->errstr : "reply");
			redisFree(ctx);
			ctx = NULL;
			/* Fetch all again once back: what moved meanwhile is
			 * not known. */
			seen_clear(&seen);
			cluster_backoff(c, &retry);
			continue;
		}
		backoff_reset(&retry);
		nap(c, ENDPOINTS_POLL_MS);
	}
	seen_clear(&seen);
	htab_release(&seen);
	redisFree(ctx);
	return NULL;
}
