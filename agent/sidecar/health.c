/*
 * health: /ready, /healthz, /endpoints and /metrics on libmicrohttpd (see
 * health.h).
 * The /ready body is built per request from the agent's flags: a handful
 * of services, a few hundred bytes. /endpoints holds libagent's newest set
 * while it writes it out (epjson.c), and lets go before answering.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cJSON.h>
#include <microhttpd.h>

#include "epjson.h"
#include "health.h"
#include "log.h"
#include "proto.h"
#include "stats.h"

#define HEALTH_CONNECTIONS 64 /* concurrent connections */
#define HEALTH_TIMEOUT_S   10 /* idle connection timeout */

#define ENDPOINTS_PREFIX "/endpoints/"

struct health {
	struct MHD_Daemon *mhd;
	agent_t *agent;
	struct hooks *hooks;
	struct stats *stats;
	atomic_bool draining;
};

/* status with body and, when index is not NULL, X-Discovery-Index. */
static enum MHD_Result reply_index(struct MHD_Connection *c, unsigned status,
				   const char *type, const char *body,
				   const char *index)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(body), (void *)body,
						MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (index)
		MHD_add_response_header(r, "X-Discovery-Index", index);
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
			     const char *type, const char *body)
{
	return reply_index(c, status, type, body, NULL);
}

static enum MHD_Result error(struct MHD_Connection *c, unsigned status,
			     const char *code)
{
	char body[128];

	snprintf(body, sizeof(body), "{\"error\":\"%s\"}", code);
	return reply(c, status, "application/json", body);
}

/* What /ready answers (and /metrics says), from *hs and the drain. */
static bool verdict(const struct health *h, const struct hooks_status *hs,
		    bool draining)
{
	/* The app's state is stale until a pending reset has run. */
	return agent_all_ready(h->agent) && !hs->reset_pending && !draining;
}

static enum MHD_Result ready(struct health *h, struct MHD_Connection *c)
{
	const agent_t *a = h->agent;
	cJSON *root = cJSON_CreateObject(), *services, *hooks;
	struct hooks_status hs;
	bool all, draining;
	enum MHD_Result rc;
	char *body;

	if (!root)
		return MHD_NO;
	hooks_status(h->hooks, &hs);
	draining = atomic_load(&h->draining);
	all = verdict(h, &hs, draining);
	cJSON_AddBoolToObject(root, "ready", all);
	cJSON_AddBoolToObject(root, "draining", draining);
	services = cJSON_AddObjectToObject(root, "services");
	for (size_t i = 0; services && i < agent_dependency_count(a); i++) {
		const char *name = agent_dependency_name(a, i);

		cJSON_AddBoolToObject(services, name, agent_is_ready(a, name));
	}
	cJSON_AddBoolToObject(root, "linked", agent_is_linked(a));
	cJSON_AddBoolToObject(root, "reset_pending", hs.reset_pending);
	hooks = cJSON_AddObjectToObject(root, "hooks");
	if (hooks) {
		cJSON_AddNumberToObject(hooks, "waiting", (double)hs.waiting);
		cJSON_AddNumberToObject(hooks, "dropped", (double)hs.dropped);
	}
	body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!body)
		return MHD_NO;
	rc = reply(c, all ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
		   "application/json", body);
	cJSON_free(body);
	return rc;
}

static bool watched(const agent_t *a, const char *service)
{
	for (size_t i = 0; i < agent_watch_count(a); i++)
		if (!strcmp(agent_watch_name(a, i), service))
			return true;
	return false;
}

/*
 * GET /endpoints/SERVICE[?state=ready|any][&tag=T]: the agent's own copy,
 * in the daemon API's shape; no round trip to the daemon.
 */
static enum MHD_Result endpoints(struct health *h, struct MHD_Connection *c,
				 const char *service)
{
	const char *state =
		MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
	struct epjson_filter f = {
		.tag = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
						   "tag")
	};
	const struct agent_endpoints *set;
	enum MHD_Result rc;
	char index[24], *body;

	if (state && strcmp(state, "ready") && strcmp(state, "any"))
		return error(c, MHD_HTTP_BAD_REQUEST, "bad_state");
	f.any = state && !strcmp(state, "any");
	if (f.tag && !proto_valid_name(f.tag))
		return error(c, MHD_HTTP_BAD_REQUEST, "bad_tag");
	if (!proto_valid_name(service) || !watched(h->agent, service))
		return error(c, MHD_HTTP_NOT_FOUND, "not_watched");
	/* Watched, but no welcome has brought its set yet. */
	if (!(set = agent_endpoints(h->agent, service)))
		return error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no_set_yet");
	snprintf(index, sizeof(index), "%llu", (unsigned long long)set->index);
	body = epjson_build(set, &f);
	agent_endpoints_release(h->agent, set);
	if (!body)
		return MHD_NO;
	rc = reply_index(c, MHD_HTTP_OK, "application/json", body, index);
	free(body);
	return rc;
}

/* GET /metrics: Prometheus text (stats.h). */
static enum MHD_Result metrics(struct health *h, struct MHD_Connection *c)
{
	struct hooks_status hs;
	bool draining = atomic_load(&h->draining);
	enum MHD_Result rc;
	char *body;

	hooks_status(h->hooks, &hs);
	if (!(body = stats_text(h->stats, &hs, draining,
				verdict(h, &hs, draining))))
		return MHD_NO;
	rc = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
		   body);
	free(body);
	return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	static int first_call_marker;
	struct health *h = cls;

	(void)version;
	(void)upload_data;
	if (!*req_cls) {
		*req_cls = &first_call_marker;
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0; /* a body is never used: discard it */
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json",
			     "{\"error\":\"method_not_allowed\"}");
	if (!strcmp(url, "/ready"))
		return ready(h, c);
	if (!strcmp(url, "/healthz"))
		return reply(c, MHD_HTTP_OK, "text/plain", "ok\n");
	if (!strcmp(url, "/metrics"))
		return metrics(h, c);
	if (!strncmp(url, ENDPOINTS_PREFIX, strlen(ENDPOINTS_PREFIX)))
		return endpoints(h, c, url + strlen(ENDPOINTS_PREFIX));
	return reply(c, MHD_HTTP_NOT_FOUND, "application/json",
		     "{\"error\":\"not_found\"}");
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	log_vtext(LOG_WARN, "http_error", fmt, ap);
}

struct health *health_start(const struct conf_addr *addr, agent_t *a,
			    struct hooks *hooks, struct stats *stats, char *err,
			    size_t errlen)
{
	struct sockaddr_storage ss;
	struct health *h;
	const union MHD_DaemonInfo *info;
	struct conf_addr bound = *addr;
	char text[CONF_ADDR_TEXT];
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;

	memset(&ss, 0, sizeof(ss));
	if (conf_addr_resolve(addr, "health.listen", &ss, err, errlen))
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->agent = a;
	h->hooks = hooks;
	h->stats = stats;
	atomic_init(&h->draining, false);
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h->mhd = MHD_start_daemon(flags, (uint16_t)addr->port, NULL, NULL,
				  handle, h, MHD_OPTION_EXTERNAL_LOGGER,
				  mhd_log, NULL, /* first: MHD wants it */
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_CONNECTION_LIMIT,
				  (unsigned)HEALTH_CONNECTIONS,
				  MHD_OPTION_CONNECTION_TIMEOUT,
				  (unsigned)HEALTH_TIMEOUT_S, MHD_OPTION_END);
	if (!h->mhd) {
		snprintf(err, errlen, "health.listen: cannot listen on %s",
			 conf_addr_format(addr, text, sizeof(text)));
		free(h);
		return NULL;
	}
	info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
	if (info)
		bound.port = info->port;
	log_info("listening", "listener=health addr=%s",
		 conf_addr_format(&bound, text, sizeof(text)));
	return h;
}

void health_set_draining(struct health *h, bool draining)
{
	if (h)
		atomic_store(&h->draining, draining);
}

void health_stop(struct health *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->mhd);
	free(h);
}
