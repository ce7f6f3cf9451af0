/*
 * agent: libagent's public handle (discovery/agent.h).
 *
 * Creation validates and copies a struct agent_config; nothing touches the
 * network until agent_start creates the libwebsockets context and the agent
 * thread, which runs the service loop until agent_destroy sets `stop` and
 * wakes it. The dependency table is built here, once: the names sorted for
 * bsearch, and a parallel array of atomic_bool that the agent thread writes
 * (session.c) and any thread reads with an acquire load.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_int.h"
#include "log.h"

#define META_MAX 8192 /* bytes of hello's meta as JSON text */

/* ---- libwebsockets' process-wide log ---------------------------------- */

/* The agent whose thread is running: libwebsockets' lines go to it. */
static _Thread_local struct agent *thread_agent;
static pthread_once_t lws_log_once = PTHREAD_ONCE_INIT;

static void lws_log_emit(int level, const char *line)
{
	struct agent *a = thread_agent;
	char text[512], q[600];
	size_t n;

	if (!a)
		return;
	snprintf(text, sizeof(text), "%s", line);
	n = strlen(text);
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		text[--n] = '\0';
	/* lws warns about every refused connection we already report. */
	notify_log(a, level == LLL_ERR ? AGENT_LOG_WARN : AGENT_LOG_DEBUG,
		   "libwebsockets text=%s", log_quote(q, sizeof(q), text));
}

static void lws_log_setup(void)
{
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
}

/* ---- errors ----------------------------------------------------------- */

const char *agent_strerror(int code)
{
	switch (code) {
	case AGENT_OK: return "success";
	case AGENT_E_INVALID: return "invalid argument or configuration";
	case AGENT_E_NOMEM: return "out of memory";
	case AGENT_E_STATE: return "not allowed in the agent's current state";
	case AGENT_E_UNSUPPORTED: return "not supported by this build";
	case AGENT_E_LWS: return "libwebsockets could not create its context";
	case AGENT_E_THREAD: return "cannot start the agent thread";
	case AGENT_E_SYS: return "a system call failed";
	case AGENT_E_NOTHOST:
		return "the agent does not dispatch to the host "
		       "(AGENT_DISPATCH_HOST)";
	case AGENT_E_NOENT:
		return "no such endpoint (none ready, or not watched)";
	case AGENT_E_RANGE: return "the buffer is too small";
	default: return "unknown error";
	}
}

const char *agent_version(void)
{
	return LIBAGENT_VERSION;
}

/* ---- creation ---------------------------------------------------------- */

void agent_config_init(struct agent_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->on_disconnect = AGENT_KEEP;
	cfg->backoff_initial_ms = 100;
	cfg->backoff_max_ms = 30000;
	cfg->backoff_multiplier = 2.0;
	cfg->heartbeat_interval_ms = 10000;
	cfg->heartbeat_timeout_ms = 30000;
	cfg->max_message = 1024 * 1024;
	cfg->dispatch = AGENT_DISPATCH_THREAD;
	cfg->queue_max = 1024;
	cfg->log_level = AGENT_LOG_INFO;
}

static int fail(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
	return -1;
}

static int str_cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

static int check_numbers(const struct agent_config *c, char *err, size_t errlen)
{
	if (c->backoff_initial_ms < 1 ||
	    c->backoff_max_ms < c->backoff_initial_ms)
		return fail(err, errlen, "backoff: need 1ms <= initial <= max");
	if (!(c->backoff_multiplier >= 1.0 && c->backoff_multiplier <= 10.0))
		return fail(err, errlen,
			    "backoff: multiplier must be 1.0 .. 10.0");
	if (c->heartbeat_interval_ms < 10 ||
	    c->heartbeat_timeout_ms <= c->heartbeat_interval_ms)
		return fail(err, errlen,
			    "heartbeat: need 10ms <= interval < timeout");
	if (c->max_message < 1024 || c->max_message > 64u * 1024 * 1024)
		return fail(err, errlen, "max_message must be 1KiB .. 64MiB");
	if (c->dispatch != AGENT_DISPATCH_THREAD &&
	    c->dispatch != AGENT_DISPATCH_HOST)
		return fail(err, errlen, "dispatch: unknown mode");
	if (c->queue_max < 1)
		return fail(err, errlen, "queue_max must be at least 1");
	if ((int)c->log_level < AGENT_LOG_ERROR ||
	    c->log_level > AGENT_LOG_DEBUG)
		return fail(err, errlen, "log_level: unknown level");
	if (c->on_disconnect != AGENT_KEEP && c->on_disconnect != AGENT_LOCK)
		return fail(err, errlen, "on_disconnect must be keep or lock");
	return 0;
}

static int set_identity(struct agent *a, const struct agent_config *c,
			char *err, size_t errlen)
{
	struct proto_hello *h = &a->hello;
	char host[256] = "", msg[400];

	if (!c->service || !proto_valid_name(c->service))
		return fail(err, errlen,
			    "service: need a name matching "
			    "[a-z0-9][a-z0-9_.-]{0,62}");
	snprintf(h->service, sizeof(h->service), "%s", c->service);

	if (!c->instance) {
		if (gethostname(host, sizeof(host) - 1))
			return fail(err, errlen,
				    "instance: cannot read the hostname");
	}
	if (!proto_valid_instance(c->instance ? c->instance : host)) {
		snprintf(msg, sizeof(msg),
			 "instance: \"%.200s\" is not a valid instance id "
			 "(1..128 printable bytes, no spaces)",
			 c->instance ? c->instance : host);
		return fail(err, errlen, msg);
	}
	snprintf(h->instance, sizeof(h->instance), "%s",
		 c->instance ? c->instance : host);

	if (c->address && strlen(c->address) > PROTO_ADDRESS_MAX)
		return fail(err, errlen, "address: too long");
	if (c->address && c->address[0] && !proto_valid_address(c->address))
		return fail(err, errlen,
			    "address: must be host:port (an IPv4 address, "
			    "[IPv6] or a DNS name; port 1-65535)");
	snprintf(h->address, sizeof(h->address), "%s",
		 c->address ? c->address : "");
	h->weight = c->weight ? c->weight : PROTO_WEIGHT_DEFAULT;
	if (h->weight > PROTO_WEIGHT_MAX)
		return fail(err, errlen, "weight: must be 1 to 1000");
	if (c->n_tags > PROTO_TAGS_MAX)
		return fail(err, errlen, "tags: more than 32");
	if (c->n_tags && !c->tags)
		return fail(err, errlen, "tags: NULL list");
	for (size_t i = 0; i < c->n_tags; i++) {
		if (!c->tags[i] || !proto_valid_name(c->tags[i]))
			return fail(err, errlen,
				    "tags: each must match "
				    "[a-z0-9][a-z0-9_.-]{0,62}");
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->tags[i], c->tags[j]) == 0)
				return fail(err, errlen,
					    "tags: a tag is listed twice");
		snprintf(h->tags[i], sizeof(h->tags[i]), "%s", c->tags[i]);
	}
	h->n_tags = c->n_tags;

	if (c->meta) {
		size_t len = strlen(c->meta);

		if (len > META_MAX ||
		    proto_json_depth(c->meta, len, PROTO_DEPTH_MAX) >
			    PROTO_DEPTH_MAX - 2)
			return fail(err, errlen,
				    "meta: too big or nested too deep");
		h->meta = cJSON_ParseWithLength(c->meta, len);
		if (!cJSON_IsObject(h->meta))
			return fail(err, errlen, "meta: need a JSON object");
	}
	return 0;
}

static int set_depends(struct agent *a, const struct agent_config *c, char *err,
		       size_t errlen)
{
	char msg[200];

	if (c->n_depends_on > AGENT_DEPENDS_MAX ||
	    c->n_depends_on > PROTO_DEPENDS_MAX)
		return fail(err, errlen, "depends_on: too many services");
	if (c->n_depends_on && !c->depends_on)
		return fail(err, errlen, "depends_on: NULL list");
	a->dep_names = calloc(c->n_depends_on + 1, sizeof(char *));
	a->flags = calloc(c->n_depends_on + 1, sizeof(atomic_bool));
	if (!a->dep_names || !a->flags)
		return fail(err, errlen, "out of memory");
	for (size_t i = 0; i < c->n_depends_on; i++) {
		const char *name = c->depends_on[i];

		if (!name || !proto_valid_name(name)) {
			snprintf(msg, sizeof(msg),
				 "depends_on: \"%.64s\" is not a valid service "
				 "name",
				 name ? name : "(null)");
			return fail(err, errlen, msg);
		}
		a->dep_names[i] = strdup(name);
		if (!a->dep_names[i])
			return fail(err, errlen, "out of memory");
		a->n_deps = i + 1;
		atomic_init(&a->flags[i], false);
	}
	qsort(a->dep_names, a->n_deps, sizeof(char *), str_cmp);
	for (size_t i = 0; i < a->n_deps; i++) {
		if (i && !strcmp(a->dep_names[i], a->dep_names[i - 1])) {
			snprintf(msg, sizeof(msg), "depends_on: \"%s\" twice",
				 a->dep_names[i]);
			return fail(err, errlen, msg);
		}
		snprintf(a->hello.depends_on[i], sizeof(a->hello.depends_on[i]),
			 "%s", a->dep_names[i]);
	}
	a->hello.n_depends = a->n_deps;
	return 0;
}

static int set_token(struct agent *a, const char *token, char *err,
		     size_t errlen)
{
	size_t n = strlen(token);

	if (n == 0 || n >= AGENT_TOKEN_MAX)
		return fail(err, errlen, "token: empty or too long");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)token[i] <= 0x20 ||
		    (unsigned char)token[i] >= 0x7f)
			return fail(err, errlen,
				    "token: spaces or control characters");
	a->token = strdup(token);
	if (!a->token)
		return fail(err, errlen, "out of memory");
	memcpy(a->token_buf, token, n + 1);
	return 0;
}

static int set_link(struct agent *a, const struct agent_config *c, char *err,
		    size_t errlen)
{
	char msg[AGENT_URL_MAX + 100];

	if (!c->urls || c->n_urls == 0)
		return fail(err, errlen, "discovery: need at least one URL");
	if (c->n_urls > AGENT_URLS_MAX)
		return fail(err, errlen, "discovery: too many URLs");
	a->urls = calloc(c->n_urls, sizeof(*a->urls));
	if (!a->urls)
		return fail(err, errlen, "out of memory");
	for (size_t i = 0; i < c->n_urls; i++) {
		if (!c->urls[i] ||
		    url_parse(c->urls[i], &a->urls[i], msg, sizeof(msg)))
			return fail(err, errlen,
				    c->urls[i] ? msg : "discovery: NULL URL");
#if !defined(LWS_WITH_TLS)
		if (a->urls[i].tls)
			return fail(err, errlen,
				    "discovery: wss:// needs libwebsockets "
				    "with TLS");
#endif
	}
	a->n_urls = c->n_urls;

	if (c->token && c->token_file)
		return fail(err, errlen,
			    "token and token_file exclude each other");
	if (c->token && set_token(a, c->token, err, errlen))
		return -1;
	if (c->token_file) {
		if (access(c->token_file, R_OK)) {
			snprintf(msg, sizeof(msg), "token_file: %.300s: %s",
				 c->token_file, strerror(errno));
			return fail(err, errlen, msg);
		}
		a->token_file = strdup(c->token_file);
		if (!a->token_file)
			return fail(err, errlen, "out of memory");
	}
	if (c->ca_file) {
		if (access(c->ca_file, R_OK)) {
			snprintf(msg, sizeof(msg), "ca_file: %.300s: %s",
				 c->ca_file, strerror(errno));
			return fail(err, errlen, msg);
		}
		a->ca_file = strdup(c->ca_file);
		if (!a->ca_file)
			return fail(err, errlen, "out of memory");
	}
	return 0;
}

static void agent_free(struct agent *a)
{
	for (size_t i = 0; a->dep_names && i < a->n_deps; i++)
		free(a->dep_names[i]);
	free(a->dep_names);
	free(a->flags);
	watch_free(a);
	free(a->urls);
	free(a->token);
	free(a->token_file);
	free(a->ca_file);
	cJSON_Delete(a->hello.meta);
	free(a);
}

agent_t *agent_new(const struct agent_config *cfg, char *err, size_t errlen)
{
	struct agent *a;

	if (!cfg) {
		fail(err, errlen, "no configuration");
		return NULL;
	}
	if (check_numbers(cfg, err, errlen))
		return NULL;
	a = calloc(1, sizeof(*a));
	if (!a) {
		fail(err, errlen, "out of memory");
		return NULL;
	}
	if (set_identity(a, cfg, err, errlen) ||
	    set_depends(a, cfg, err, errlen) ||
	    watch_init(a, cfg, err, errlen) || set_link(a, cfg, err, errlen)) {
		agent_free(a);
		return NULL;
	}
	a->on_disconnect = cfg->on_disconnect;
	a->backoff_initial_ms = cfg->backoff_initial_ms;
	a->backoff_max_ms = cfg->backoff_max_ms;
	a->backoff_multiplier = cfg->backoff_multiplier;
	a->heartbeat_interval_ms = cfg->heartbeat_interval_ms;
	a->heartbeat_timeout_ms = cfg->heartbeat_timeout_ms;
	a->max_message = cfg->max_message;
	a->dispatch = cfg->dispatch;
	a->queue_max = cfg->queue_max;
	atomic_init(&a->log_level, (int)cfg->log_level);
	atomic_init(&a->own_ready, false);
	atomic_init(&a->own_ready_set, false);
	atomic_init(&a->own_draining, false);
	atomic_init(&a->own_load, LOAD_NONE);
	atomic_init(&a->status_gen, 0);
	atomic_init(&a->linked, false);
	atomic_init(&a->started, false);
	atomic_init(&a->stop, false);
	atomic_init(&a->rx_resume, false);
	a->link.sent_gen = 0;
	snprintf(a->info.service, sizeof(a->info.service), "%s",
		 a->hello.service);
	snprintf(a->info.instance, sizeof(a->info.instance), "%s",
		 a->hello.instance);

	if (pthread_mutex_init(&a->info_mu, NULL)) {
		fail(err, errlen, "cannot create a mutex");
		agent_free(a);
		return NULL;
	}
	if (notify_init(a)) {
		fail(err, errlen, "cannot create the callback queue (eventfd)");
		pthread_mutex_destroy(&a->info_mu);
		agent_free(a);
		return NULL;
	}
	return a;
}

int agent_set_callbacks(agent_t *a, const struct agent_callbacks *cb)
{
	if (!a || !cb)
		return AGENT_E_INVALID;
	if (atomic_load(&a->started))
		return AGENT_E_STATE;
	a->cb = *cb;
	return 0;
}

int agent_set_log_level(agent_t *a, enum agent_log_level level)
{
	if (!a || (int)level < AGENT_LOG_ERROR || level > AGENT_LOG_DEBUG)
		return AGENT_E_INVALID;
	atomic_store(&a->log_level, (int)level);
	return 0;
}

/* ---- the thread -------------------------------------------------------- */

static void *agent_main(void *arg)
{
	struct agent *a = arg;

	thread_agent = a;
	link_begin(a);
	while (!a->link.finished) {
		if (lws_service(a->ctx, 0) < 0) {
			notify_log(a, AGENT_LOG_ERROR, "service_failed");
			break;
		}
	}
	link_end(a);
	thread_agent = NULL;
	return NULL;
}

static int create_context(struct agent *a)
{
	struct lws_context_creation_info info;
	struct agent *prev;
	bool tls = false;

	for (size_t i = 0; i < a->n_urls; i++)
		tls = tls || a->urls[i].tls;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = link_protocols;
	info.user = a;
	/* One client socket and lws' own pipe; a small table also makes lws
	 * look fds up by value, whatever their number in the host process. */
	info.fd_limit_per_thread = 16;
	/* The handshake (with a token of up to AGENT_TOKEN_MAX) is built in it.
	 */
	info.pt_serv_buf_size = 4 * AGENT_TOKEN_MAX;
	if (tls) {
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.client_ssl_ca_filepath = a->ca_file;
	}
	/* What lws logs while it builds the context (an unreadable CA bundle,
	 * say) is the only account of an AGENT_E_LWS: route it to this agent
	 * from the calling thread. */
	prev = thread_agent; /* agent_start may run on another agent's thread */
	thread_agent = a;
	a->ctx = lws_create_context(&info);
	thread_agent = prev;
	return a->ctx ? 0 : AGENT_E_LWS;
}

int agent_start(agent_t *a)
{
	sigset_t all, old;
	int rc;

	if (!a)
		return AGENT_E_INVALID;
	if (atomic_load(&a->started))
		return AGENT_E_STATE;
	pthread_once(&lws_log_once, lws_log_setup);
	if (!a->ctx && (rc = create_context(a)))
		return rc;

	/* The agent thread takes no signals: they belong to the host. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	/* Before the thread exists: an agent_set_ready that sees `started`
	 * false is read by the thread when it runs; one that sees it true
	 * finds a context to wake. */
	atomic_store(&a->started, true);
	rc = pthread_create(&a->thread, NULL, agent_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		/* Keep the context: another thread may have seen `started` and
		 * be waking it right now. agent_destroy (or the next
		 * agent_start) takes it. */
		atomic_store(&a->started, false);
		return AGENT_E_THREAD;
	}
	pthread_mutex_lock(&a->info_mu);
	a->info.started = true;
	pthread_mutex_unlock(&a->info_mu);
	return 0;
}

void agent_destroy(agent_t *a)
{
	if (!a)
		return;
	if (atomic_load(&a->started)) {
		if (pthread_equal(pthread_self(), a->thread)) {
			/* From one of our callbacks: joining ourselves would
			 * deadlock and freeing would pull the loop from under
			 * us. Refusing (and leaking) is the lesser harm. */
			notify_log(a, AGENT_LOG_ERROR,
				   "destroy_refused reason=\"called from a "
				   "callback\"");
			return;
		}
		atomic_store(&a->stop, true);
		lws_cancel_service(a->ctx);
		pthread_join(a->thread, NULL);
	}
	if (a->ctx) {
		/* No thread services the context any more; the link already
		 * said goodbye, so whatever lws still closes here stays quiet.
		 */
		a->link.destroying = true;
		lws_context_destroy(a->ctx);
		a->ctx = NULL;
	}
	link_release(a);
	notify_release(a);
	pthread_mutex_destroy(&a->info_mu);
	agent_free(a);
}

/* ---- readers ----------------------------------------------------------- */

bool agent_is_ready(const agent_t *a, const char *service)
{
	int i = a ? deps_index(a, service) : -1;

	return i >= 0 &&
	       atomic_load_explicit(&a->flags[i], memory_order_acquire);
}

bool agent_all_ready(const agent_t *a)
{
	if (!a)
		return false;
	for (size_t i = 0; i < a->n_deps; i++)
		if (!atomic_load_explicit(&a->flags[i], memory_order_acquire))
			return false;
	return true;
}

const atomic_bool *agent_ready_flag(const agent_t *a, const char *service)
{
	int i = a ? deps_index(a, service) : -1;

	return i >= 0 ? &a->flags[i] : NULL;
}

size_t agent_dependency_count(const agent_t *a)
{
	return a ? a->n_deps : 0;
}

const char *agent_dependency_name(const agent_t *a, size_t i)
{
	return a && i < a->n_deps ? a->dep_names[i] : NULL;
}

/* Something the status says moved: the agent thread sends it again. */
static void status_moved(agent_t *a)
{
	if (atomic_fetch_add(&a->status_gen, 1) + 1 == 0)
		atomic_fetch_add(&a->status_gen, 1); /* 0 means none */
	if (atomic_load(&a->started))
		lws_cancel_service(a->ctx);
}

int agent_set_ready(agent_t *a, bool ready)
{
	bool was, was_set;

	if (!a)
		return AGENT_E_INVALID;
	was = atomic_exchange(&a->own_ready, ready);
	was_set = atomic_exchange(&a->own_ready_set, true);
	if (was != ready || !was_set)
		status_moved(a);
	return 0;
}

int agent_set_draining(agent_t *a, bool draining)
{
	if (!a)
		return AGENT_E_INVALID;
	if (atomic_exchange(&a->own_draining, draining) != draining)
		status_moved(a);
	return 0;
}

int agent_set_load(agent_t *a, double load)
{
	unsigned v;

	if (!a || !(load >= 0.0 && load <= 1.0))
		return AGENT_E_INVALID;
	v = (unsigned)(load * AGENT_LOAD_SCALE + 0.5);
	if (atomic_exchange(&a->own_load, v) != v)
		status_moved(a);
	return 0;
}

bool agent_is_linked(const agent_t *a)
{
	return a && atomic_load(&a->linked);
}

int agent_info(const agent_t *a, struct agent_info *out)
{
	struct agent *m = (struct agent *)a; /* the mutex, not the state */

	if (!a || !out)
		return AGENT_E_INVALID;
	pthread_mutex_lock(&m->info_mu);
	*out = a->info;
	pthread_mutex_unlock(&m->info_mu);
	out->linked = atomic_load(&a->linked);
	return 0;
}
