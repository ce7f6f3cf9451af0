/*
 * health: /ready and /healthz on libmicrohttpd (see health.h). The /ready
 * body is built per request from the agent's flags: a handful of services,
 * a few hundred bytes.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cJSON.h>
#include <microhttpd.h>

#include "health.h"
#include "log.h"

#define HEALTH_CONNECTIONS 64 /* concurrent connections */
#define HEALTH_TIMEOUT_S   10 /* idle connection timeout */

struct health {
	struct MHD_Daemon *mhd;
	const agent_t *agent;
	struct hooks *hooks;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
			     const char *type, const char *body)
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
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result ready(struct health *h, struct MHD_Connection *c)
{
	const agent_t *a = h->agent;
	cJSON *root = cJSON_CreateObject(), *services, *hooks;
	struct hooks_status hs;
	bool all;
	enum MHD_Result rc;
	char *body;

	if (!root)
		return MHD_NO;
	/* The app's state is stale until a pending reset has run. */
	hooks_status(h->hooks, &hs);
	all = agent_all_ready(a) && !hs.reset_pending;
	cJSON_AddBoolToObject(root, "ready", all);
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
	return reply(c, MHD_HTTP_NOT_FOUND, "application/json",
		     "{\"error\":\"not_found\"}");
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	log_vtext(LOG_WARN, "http_error", fmt, ap);
}

struct health *health_start(const struct conf_addr *addr, const agent_t *a,
			    struct hooks *hooks, char *err, size_t errlen)
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

void health_stop(struct health *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->mhd);
	free(h);
}
