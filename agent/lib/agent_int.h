/*
 * agent_int: what libagent's modules share. Nothing outside agent/lib
 * includes it.
 *
 *   agent.c    the public handle: creation from a config, the thread, the
 *              lock-free readers, agent_set_ready, introspection
 *   link.c     the libwebsockets client on the agent thread: connect,
 *              reconnect with backoff over the URLs, frames in and out,
 *              heartbeat, close
 *   session.c  the protocol state above the link: hello/resume, welcome,
 *              events, the dependency flags
 *   watch.c    the watched services' endpoints: sets built on the agent
 *              thread, read lock-free anywhere; agent_pick
 *   notify.c   callbacks: run at once on the agent thread, or queued for
 *              the host's loop (eventfd + agent_dispatch); log lines
 *   url.c      ws:// and wss:// URLs
 *   load.c     agent_load: the YAML file through libcommon's conf
 *
 * Ownership of state by thread: the fields under "agent thread" below are
 * touched only by the agent thread (or by agent_start/agent_destroy while no
 * agent thread runs). Everything another thread may touch is an atomic or
 * sits under a named mutex.
 */
#ifndef AGENT_INT_H
#define AGENT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "backoff.h"
#include "conf.h"
#include "discovery/agent.h"
#include "proto.h"

/* The Makefile's VERSION, as every program's. */
#ifndef DISCOVERY_VERSION
#error "DISCOVERY_VERSION comes from the Makefile"
#endif
#define LIBAGENT_VERSION DISCOVERY_VERSION

/* Close reasons travel in a control frame: 125 bytes minus the code. */
#define CLOSE_REASON_MAX 123
/* Bytes of one log line handed to on_log. */
#define LOG_LINE_MAX 1024
/* How long agent_destroy lets our close take before it leaves anyway. */
#define STOP_GRACE_MS 2000
/* How long a close we start may take before the connection is dropped
 * outright (a dead peer never makes the socket writable again). */
#define CLOSE_GRACE_MS 2000
/* libwebsockets reads at most this much per callback; we reassemble. */
#define RX_CHUNK 1024
/* The reassembly buffer kept between messages; a bigger one is freed. */
#define RX_KEEP (64 * 1024)

/* The load as the agent keeps it: an atomic integer, 1e-4 steps. */
#define AGENT_LOAD_SCALE 10000u
#define LOAD_NONE        0xffffffffu

struct url {
	char text[AGENT_URL_MAX];
	char host[256];                   /* without brackets */
	char host_header[CONF_ADDR_TEXT]; /* "host" or "host:port", brackets for
					     IPv6 */
	char path[AGENT_URL_MAX];
	int port;
	bool tls;
};

struct pending;
struct epview;

/* A watched service's endpoints (watch.c): buffers of published sets,
 * readers counted on each; `current` names one, with a generation. */
#define WATCH_BUFS 8 /* a power of two */
struct watch_buf {
	atomic_uint refs;
	struct epview *set;
};
struct watch_slot {
	char name[PROTO_NAME_MAX + 1];
	_Atomic uint32_t current; /* gen << 3 | buffer; UINT32_MAX: none */
	atomic_bool queued;       /* an on_endpoints waits (HOST dispatch) */
	struct watch_buf bufs[WATCH_BUFS];
	/* Agent thread. */
	uint32_t gen;
	struct epview *latest;  /* the newest set, published or not */
	struct epview *pending; /* built, waiting for a free buffer */
};

/* The link and the session, owned by the agent thread. */
struct link {
	struct lws *wsi;
	size_t url_index;
	uint32_t attempt; /* attempts since the last welcome */
	bool attempting;  /* a connection (attempt) is alive */
	bool established; /* upgraded to WebSocket */
	bool welcomed;
	bool need_hello;
	bool ping_due;
	bool rx_paused;     /* the host's callback queue is full */
	unsigned sent_gen;  /* status_gen last sent on this link; 0: none */
	int64_t attempt_ms; /* when this attempt started */
	int64_t last_rx_ms;

	/* Why the link ends: ours (set before closing) or the daemon's. */
	int close_code; /* ours; 0 = we are not closing */
	char close_reason[CLOSE_REASON_MAX + 1];
	int64_t close_ms; /* when we started closing */
	int end_code;     /* what on_link reports */
	char end_reason[160];
	int http_status;

	char *rx; /* a message arriving in fragments */
	size_t rx_len, rx_cap;

	/* Session: kept across links for resume. */
	bool have_session; /* a welcome was seen: resume from here */
	bool resumed;      /* this link's hello carried resume */
	char epoch[PROTO_EPOCH_MAX + 1];
	uint64_t seq; /* the position the next hello resumes from */
	/* After a welcome with recovered:true, `replay_left` of the events that
	 * follow are replays; once they are in, the agent is at replay_seq (the
	 * welcome's seq), even if the last replay was older. */
	uint64_t replay_left;
	uint64_t replay_seq;
	char node[PROTO_INSTANCE_MAX + 1];

	bool stopping;   /* agent_destroy asked; no reconnect */
	bool finished;   /* leave the service loop */
	bool destroying; /* inside lws_context_destroy: be quiet */

	lws_sorted_usec_list_t retry_sul;
	lws_sorted_usec_list_t tick_sul;
	lws_sorted_usec_list_t stop_sul;
};

struct agent {
	/* Fixed at creation. */
	struct url *urls;
	size_t n_urls;
	struct proto_hello hello; /* service, instance, address, deps, meta */
	char **dep_names;         /* sorted, n_deps */
	size_t n_deps;
	atomic_bool *flags;       /* parallel to dep_names */
	struct watch_slot *watch; /* sorted by name, n_watch */
	size_t n_watch;
	char *token; /* fixed token, or NULL */
	char *token_file;
	char *ca_file;
	enum agent_on_disconnect on_disconnect;
	uint32_t backoff_initial_ms, backoff_max_ms;
	double backoff_multiplier;
	uint32_t heartbeat_interval_ms, heartbeat_timeout_ms;
	size_t max_message;
	enum agent_dispatch dispatch;
	size_t queue_max;
	struct agent_callbacks cb; /* set before start */

	/* Any thread. */
	atomic_int log_level;
	atomic_bool own_ready;
	atomic_bool own_ready_set;
	atomic_bool own_draining;
	atomic_uint own_load;   /* load * AGENT_LOAD_SCALE; LOAD_NONE: unset */
	atomic_uint status_gen; /* +1 at each change of the three; 0: none */
	atomic_bool linked;
	atomic_bool started;
	atomic_bool stop;      /* agent_destroy asked */
	atomic_bool rx_resume; /* agent_dispatch drained the queue */

	pthread_mutex_t info_mu; /* guards info */
	struct agent_info info;

	pthread_mutex_t q_mu; /* guards the queue (AGENT_DISPATCH_HOST) */
	struct pending *q_head, *q_tail;
	size_t q_len;
	uint64_t q_dropped; /* log lines dropped while full */
	int efd;            /* eventfd, -1 in thread mode */

	/* Agent thread (and start/destroy while it does not run). */
	struct lws_context *ctx;
	pthread_t thread;
	struct backoff backoff;
	char token_buf[AGENT_TOKEN_MAX]; /* the token of the current attempt */
	struct link link;
};

/* link.c */
extern const struct lws_protocols link_protocols[];
void link_begin(struct agent *a);
void link_end(struct agent *a);
void link_close(struct agent *a, int code, const char *reason);
void link_want_write(struct agent *a);
void link_release(struct agent *a);

/* session.c */
int deps_index(const struct agent *a, const char *name);
int session_hello(struct agent *a, char **buf, size_t *len);
void session_frame(struct agent *a, const char *buf, size_t len);
void session_unlinked(struct agent *a);

/* watch.c */
int watch_init(struct agent *a, const struct agent_config *c, char *err,
	       size_t errlen);
void watch_free(struct agent *a);
void watch_welcome(struct agent *a, const cJSON *endpoints);
void watch_message(struct agent *a, const struct proto_endpoints *m);
void watch_tick(struct agent *a);

/* notify.c */
int notify_init(struct agent *a);
void notify_release(struct agent *a);
bool notify_queue_full(struct agent *a);
void notify_log(struct agent *a, enum agent_log_level level, const char *fmt,
		...) __attribute__((format(printf, 3, 4)));
void notify_readiness(struct agent *a, const char *service, bool ready);
void notify_event(struct agent *a, const struct agent_event *ev);
void notify_link(struct agent *a, enum agent_link_state state,
		 const struct agent_link_info *info);
void notify_endpoints(struct agent *a, struct watch_slot *s);

/* url.c */
int url_parse(const char *text, struct url *u, char *err, size_t errlen);

#endif
