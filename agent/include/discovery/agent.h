/*
 * libagent: the client side of discovery (man libagent).
 *
 * An agent keeps one WebSocket link (subprotocol "discovery.v1") to a
 * discoveryd, announces this instance (service, instance, address, the
 * services it depends on), mirrors the readiness of those dependencies in
 * atomic flags, reports this instance's own readiness, and hands every event
 * the daemon sends (readiness changes, cache invalidations, commands) to the
 * application.
 *
 *   agent_t *a = agent_load("/etc/discovery/agent.yaml", err, sizeof err);
 *   agent_set_callbacks(a, &cb);            optional, before agent_start
 *   agent_start(a);                         the link runs on its own thread
 *   ...
 *   if (agent_is_ready(a, "cache")) ...     lock-free, from any thread
 *   agent_set_ready(a, true);               from any thread
 *   ...
 *   agent_destroy(a);                       closes the link (1000), joins,
 * frees
 *
 * Threads. Every agent runs one thread of its own (the "agent thread"),
 * started by agent_start, which owns the libwebsockets context and the link.
 * The readers (agent_is_ready, agent_all_ready, agent_ready_flag,
 * agent_is_linked, agent_info, agent_endpoints, agent_pick) and
 * agent_set_ready / agent_set_draining / agent_set_load /
 * agent_set_log_level may
 * be called from any thread at any time between agent_new/agent_load and
 * agent_destroy. Configuration calls (agent_set_callbacks) belong before
 * agent_start. agent_destroy must be called once, from a thread that is not
 * running one of the agent's callbacks, when no other thread still uses the
 * handle. The agent thread blocks every signal (they are the host's).
 * Creating the libwebsockets context (agent_start) sets SIGPIPE to SIG_IGN
 * for the whole process: libwebsockets' doing, which a host that relies on
 * SIGPIPE must know.
 *
 * Callbacks run on the agent thread by default (AGENT_DISPATCH_THREAD): keep
 * them short; a callback that blocks stalls the link (and its heartbeat).
 * With AGENT_DISPATCH_HOST they are queued instead and run on the thread that
 * calls agent_dispatch() when agent_fd() becomes readable, so an application
 * with its own event loop (epoll, libuv, ...) gets them on its loop thread.
 * Readiness flags are updated on the agent thread in both modes, before the
 * matching callback is queued. Two exceptions to "the agent thread": on_log
 * may also run on the thread calling agent_start, for what libwebsockets
 * says while it creates its context (the reason for an AGENT_E_LWS); and
 * the last callbacks of an agent (on_link UNLINKED, with AGENT_LOCK the
 * on_readiness drops) run on the agent thread while agent_destroy waits for
 * it, so agent_destroy must not be called with a lock those callbacks take.
 *
 * Reconnection. A lost link is retried forever with exponential backoff and
 * full jitter, rotating over the configured URLs; the backoff starts over
 * after each welcome. The agent remembers its position (the last (epoch,
 * seq) it saw; once a resume's replay is in, the welcome's seq) and asks the
 * daemon to resume from it, so events missed while unlinked are replayed; when
 * the daemon cannot replay them it says so (recovered:false, reported as
 * agent_link_info.reset) and the application should treat its state as reset
 * (for example flush its whole cache).
 *
 * Errors. Nothing in libagent prints, exits or aborts. Functions return 0 or
 * a negative AGENT_E_* code (agent_strerror names it); constructors return
 * NULL with a one-line message in the caller's buffer. Log lines go to the
 * on_log callback. libwebsockets' own (process-wide) log is routed to the
 * on_log callback of the agent whose thread produced the line; its level is
 * set to errors and warnings when the first agent starts.
 *
 * Ownership. Strings and arrays passed in (struct agent_config, the
 * callbacks struct, paths, extra_keys, aliases) are copied or used during
 * the call only: the caller may free them as soon as the call returns. The
 * callbacks' `ud` is the caller's and must stay valid until agent_destroy
 * returns.
 * Pointers passed to callbacks are owned by libagent and valid only until
 * the callback returns. Pointers returned by the getters (agent_ready_flag,
 * agent_dependency_name) stay valid until agent_destroy; agent_strerror,
 * agent_version and agent_conf_keys return static storage. Error messages
 * are written into the caller's buffer (err, errlen), NUL-terminated and
 * truncated to fit.
 *
 * Requires C11 (<stdatomic.h>) for agent_ready_flag; everything else is
 * plain C and callable from C++.
 */
#ifndef DISCOVERY_AGENT_H
#define DISCOVERY_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#if !defined(__cplusplus)
#include <stdatomic.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct agent agent_t; /* opaque */

/* ---- error codes ------------------------------------------------------ */

#define AGENT_OK            0
#define AGENT_E_INVALID     -1 /* an argument or a configuration value is wrong */
#define AGENT_E_NOMEM       -2 /* out of memory */
#define AGENT_E_STATE       -3 /* not allowed now (already started, ...) */
#define AGENT_E_UNSUPPORTED -4 /* not built in (e.g. wss:// without TLS) */
#define AGENT_E_LWS         -5 /* libwebsockets could not create its context */
#define AGENT_E_THREAD      -6 /* the agent thread could not be started */
#define AGENT_E_SYS         -7 /* a system call failed (errno-level cause) */
#define AGENT_E_NOTHOST                                                        \
	-8 /* agent_fd/agent_dispatch without AGENT_DISPATCH_HOST */
#define AGENT_E_NOENT -9  /* no such thing: no ready endpoint to pick */
#define AGENT_E_RANGE -10 /* the caller's buffer is too small */

/*
 * A static English sentence for an AGENT_E_* code (or AGENT_OK); never NULL,
 * "unknown error" for anything else. Not to be freed.
 */
const char *agent_strerror(int code);

/* The library version, "MAJOR.MINOR.PATCH"; static. */
const char *agent_version(void);

/* ---- configuration ---------------------------------------------------- */

/* What the dependency flags do while the link is down. */
enum agent_on_disconnect {
	AGENT_KEEP = 0, /* keep their last known value (default) */
	AGENT_LOCK = 1, /* drop to not-ready until the next welcome */
};

/* Where callbacks run. */
enum agent_dispatch {
	AGENT_DISPATCH_THREAD = 0, /* on the agent thread (default) */
	AGENT_DISPATCH_HOST = 1,   /* queued; run by agent_dispatch() */
};

/* Log levels, most severe first (the same order as syslog's). */
enum agent_log_level {
	AGENT_LOG_ERROR = 0,
	AGENT_LOG_WARN = 1,
	AGENT_LOG_INFO = 2,
	AGENT_LOG_DEBUG = 3,
};

#define AGENT_URLS_MAX    16   /* discovery URLs for failover */
#define AGENT_DEPENDS_MAX 64   /* depends_on entries */
#define AGENT_URL_MAX     512  /* bytes of one URL, NUL included */
#define AGENT_TOKEN_MAX   4096 /* bytes of a token, NUL included */

/*
 * Everything an agent is made from. Fill with agent_config_init (defaults),
 * then set fields; agent_new copies what it needs (every string and array),
 * so the struct and what it points to may be freed right after.
 */
struct agent_config {
	/* "ws://host[:port][/path]" or "wss://..."; tried in turn. Required. */
	const char *const *urls;
	size_t n_urls;
	/* This instance's service name, [a-z0-9][a-z0-9_.-]{0,62}. Required. */
	const char *service;
	/* Instance id (printable, no spaces, <= 128 bytes); NULL: the hostname.
	 */
	const char *instance;
	/* Where this instance serves, host:port ("10.0.0.5:8080",
	 * "[2001:db8::5]:443", "web-1.example:80"); NULL: none. */
	const char *address;
	/* Names to select this instance by (at most 32, names as for
	 * service), and its share of the traffic, 1-1000 (0: 100). */
	const char *const *tags;
	size_t n_tags;
	uint32_t weight;
	/* Services whose readiness the agent mirrors; names as for service. */
	const char *const *depends_on;
	size_t n_depends_on;
	/* A JSON object sent as hello's "meta" (e.g. "{\"zone\":\"eu-1\"}");
	 * NULL: {}. */
	const char *meta;
	/* Bearer token for the handshake; NULL: none. At most one of token and
	 * token_file. */
	const char *token;
	/* A file holding the token, read again at every connection attempt (so
	 * a rotated token is picked up without a restart); NULL: none. */
	const char *token_file;
	/* PEM CA bundle to verify wss:// servers with; NULL: the system store.
	 */
	const char *ca_file;
	enum agent_on_disconnect on_disconnect; /* default AGENT_KEEP */
	/* Reconnect delay: uniform in [0, min(max, initial * multiplier^n)]. */
	uint32_t backoff_initial_ms; /* default 100 */
	uint32_t backoff_max_ms;     /* default 30000 */
	double backoff_multiplier;   /* default 2.0, 1.0 .. 10.0 */
	/* The agent pings the daemon every interval; a link with nothing heard
	 * (frame or pong) for timeout is dropped and reconnected. The timeout
	 * also bounds a connection attempt: no welcome within it of the
	 * attempt's start (a server that accepts and never answers) ends the
	 * attempt, and the next URL is tried. */
	uint32_t heartbeat_interval_ms; /* default 10000 */
	uint32_t heartbeat_timeout_ms;  /* default 30000, > interval */
	/* Cap on one incoming message (reassembled from its fragments); a
	 * larger one closes the link with 1009. */
	size_t max_message;           /* default 1 MiB */
	enum agent_dispatch dispatch; /* default AGENT_DISPATCH_THREAD */
	/* AGENT_DISPATCH_HOST: callbacks pending before the agent stops reading
	 * from the link (the daemon then queues, and at its limit drops the
	 * link, which later resumes: nothing is lost, nothing grows without
	 * bound). */
	size_t queue_max;               /* default 1024 */
	enum agent_log_level log_level; /* default AGENT_LOG_INFO */
	/* Services whose endpoints the agent keeps (agent_endpoints,
	 * agent_pick): those of depends_on (watch_depends_on), or the list
	 * watch (at most 64 names; ignored with watch_depends_on). */
	bool watch_depends_on;
	const char *const *watch;
	size_t n_watch;
};

/* Fill cfg with the defaults above (and NULL/0 elsewhere). */
void agent_config_init(struct agent_config *cfg);

/*
 * Create an agent from cfg (copied). Returns NULL with a one-line message in
 * err (if err is not NULL) when cfg is invalid or memory runs out. The agent
 * does nothing until agent_start.
 */
agent_t *agent_new(const struct agent_config *cfg, char *err, size_t errlen);

/*
 * Create an agent from a YAML file (conf/agent.yaml documents the keys:
 * discovery, service, instance, address, tags, weight, depends_on, watch,
 * watch_depends_on, meta, token_file, ca_file, on_disconnect, backoff,
 * heartbeat, max_message). Unknown keys and
 * wrong types are errors. Returns NULL with "FILE:LINE:COL: message" (or
 * "FILE: message") in err.
 */
agent_t *agent_load(const char *yaml_path, char *err, size_t errlen);

/*
 * The same, but the top-level keys listed in extra_keys (NULL-terminated; the
 * array may be NULL; used during the call only) are allowed and skipped:
 * programs built on libagent keep their own keys in the same file.
 */
agent_t *agent_load_ex(const char *yaml_path, const char *const *extra_keys,
		       char *err, size_t errlen);

/*
 * Another name for one of libagent's top-level keys, under which a program
 * documents it in its own file (the gate's `requires` is depends_on).
 */
struct agent_key_alias {
	const char *alias; /* the program's name for the key */
	const char *key;   /* the key of agent_conf_keys() it stands for */
};

/*
 * agent_load_ex, where the file may also spell libagent's keys as aliases
 * says (an array ended by an entry whose alias is NULL; the array may be
 * NULL; used during the call only). A key and its alias are one key: both
 * in one file is an error, and messages about the value use the name the
 * file used. Each key takes at most one alias, which must not be a key of
 * libagent; an alias may also be listed in extra_keys. A wrong aliases
 * array gives NULL with "FILE: aliases: ..." in err.
 */
agent_t *agent_load_aliased(const char *yaml_path,
			    const char *const *extra_keys,
			    const struct agent_key_alias *aliases, char *err,
			    size_t errlen);

/*
 * The top-level keys agent_load reads, NULL-terminated; static. A program
 * that reads the same file with its own loader skips these.
 */
const char *const *agent_conf_keys(void);

/* ---- callbacks -------------------------------------------------------- */

enum agent_link_state {
	AGENT_LINK_CONNECTING = 1, /* a connection attempt starts */
	AGENT_LINK_LINKED, /* the daemon's welcome arrived: flags are current */
	AGENT_LINK_UNLINKED, /* the link (or the attempt) is over */
};

/* What on_link reports; every pointer is valid during the callback only. */
struct agent_link_info {
	const char *url;  /* the URL of this link or attempt */
	uint32_t attempt; /* attempts since the last welcome, 1 = first;
			   * 0 on the UNLINKED of a welcomed link */
	/* LINKED */
	const char *node;  /* the daemon node that answered */
	const char *epoch; /* the daemon's history epoch */
	uint64_t seq;      /* the last seq the agent has seen */
	bool resumed;      /* the hello asked to resume from an earlier seq */
	bool recovered;    /* the daemon replays every missed event */
	bool reset;        /* !recovered: state may have been missed; the
			    * application should flush what it derived from
			    * events (its cache). Also true on the first link. */
	/* UNLINKED */
	bool was_linked;    /* false: the attempt failed before a welcome */
	int close_code;     /* WebSocket close code; 1006 when the connection
			     * failed or dropped without a close frame;
			     * 1012 with reason "drain spread_ms=N": the
			     * node is draining, the next attempt goes to
			     * the next URL after retry_ms <= N */
	const char *reason; /* close reason or error text; "" if none */
	int http_status;   /* a refused handshake's HTTP status (401, 403, ...),
			      else 0 */
	uint32_t retry_ms; /* delay before the next attempt; 0 when stopping */
};

/*
 * One event from the daemon; every pointer is valid during the callback only
 * (copy what you keep). Strings are NUL-terminated.
 */
struct agent_event {
	const char *kind; /* "readiness", "invalidate", "command" (or a future
			     kind) */
	const char *epoch;
	uint64_t seq;
	const char *command; /* e.g. "DataSend"; "" when absent */
	/* Compact JSON text, "null" when absent; numbers exactly as the
	 * sender wrote them (not rounded through a double). */
	const char *header;
	const char *value;
	const char *json; /* the whole frame as received */
	size_t json_len;  /* strlen(json) */
	bool replayed;    /* part of a resume replay (older than the welcome) */
	/* kind "readiness": the service and its new state (else NULL/false). */
	const char *service;
	bool ready;
	/* kind "invalidate": the string keys of value.keys (else 0/NULL). */
	size_t n_keys;
	const char *const *keys;
};

/* ---- endpoints ---------------------------------------------------------- */

enum agent_endpoint_state {
	AGENT_ENDPOINT_NOTREADY = 0,
	AGENT_ENDPOINT_READY = 1,
	AGENT_ENDPOINT_DRAINING = 2, /* alive, wanting no new work */
};

/* One instance of a watched service (docs/protocol.md, "Endpoints"). */
struct agent_endpoint {
	const char *instance;
	const char *address; /* host:port */
	const char *node;    /* the daemon node its link is on; "" unknown */
	const char *const *tags;
	size_t n_tags;
	enum agent_endpoint_state state;
	uint32_t weight; /* 1-1000 */
	double load;     /* 0-1 as the instance reported it; -1: none yet */
};

/*
 * A watched service's endpoints at one index, sorted by instance. Never
 * changes once made: the agent thread makes a new one for each change
 * and publishes it, so a reader never sees one half updated.
 */
struct agent_endpoints {
	const char *service;
	uint64_t index; /* the daemon's, for this service (it only grows on
			   one node) */
	size_t n;       /* in ep */
	size_t n_ready; /* of them, state READY */
	const struct agent_endpoint *ep;
};

/*
 * The newest endpoints of a watched service, from any thread, without a
 * lock: NULL when service is not watched or no set has come yet. The set
 * stays valid, and unchanged, until agent_endpoints_release(a, set),
 * which every non-NULL result needs, exactly once, before agent_destroy.
 * Hold it briefly: while a reader holds sets, newer ones wait (at most 7
 * sets of one service may be held at once before the agent holds back
 * the next change of it until one is released).
 */
const struct agent_endpoints *agent_endpoints(agent_t *a, const char *service);
void agent_endpoints_release(agent_t *a, const struct agent_endpoints *set);

/* The watched services, sorted by name (what watch or watch_depends_on
 * named). Names are owned by the agent and valid until agent_destroy; NULL
 * past the end. */
size_t agent_watch_count(const agent_t *a);
const char *agent_watch_name(const agent_t *a, size_t i);

/*
 * Write the host:port of one ready endpoint of a watched service into
 * addr (NUL-terminated): two ready endpoints drawn at random in proportion
 * to their weight, and of those the one with the lower reported load
 * (power of two choices; an endpoint that reported no load counts as half
 * loaded). Skips draining and not ready ones. Any thread, lock-free. 0,
 * AGENT_E_NOENT (not watched, no set yet, or no ready endpoint),
 * AGENT_E_RANGE (addrlen too small: nothing written but ""),
 * AGENT_E_INVALID (NULL arguments).
 */
int agent_pick(agent_t *a, const char *service, char *addr, size_t addrlen);

/*
 * Set with agent_set_callbacks before agent_start (copied); any member may be
 * NULL. They run on the agent thread, or with AGENT_DISPATCH_HOST on the
 * thread calling agent_dispatch. Within one agent they never run
 * concurrently and arrive in order. A callback may call any agent_* function
 * but agent_destroy.
 */
struct agent_callbacks {
	/* A dependency's flag changed (the flag already holds `ready`). */
	void (*on_readiness)(agent_t *a, const char *service, bool ready,
			     void *ud);
	/* Every event, after the flag (if any) was updated and on_readiness
	 * ran. */
	void (*on_event)(agent_t *a, const struct agent_event *ev, void *ud);
	/* The link changed state. On LINKED, on_link runs before the
	 * on_readiness calls for the flags the welcome changed; on UNLINKED
	 * (with AGENT_LOCK), before those for the flags that dropped. */
	void (*on_link)(agent_t *a, enum agent_link_state state,
			const struct agent_link_info *info, void *ud);
	/* One log line: "message key=value ...", the message a single token
	 * (e.g. "connect_failed url=ws://... reason=\"...\""); values from the
	 * network are quoted. Lines above the agent's log level are not made.
	 */
	void (*on_log)(enum agent_log_level level, const char *line, void *ud);
	void *ud; /* given to every callback; owned by the caller */
	/* Later additions go here, after ud, so that code that fills the
	 * struct in order keeps working. */
	/* A watched service's endpoints changed; set is the newest, valid
	 * during the callback only (on the agent thread it may be newer than
	 * what agent_endpoints gives yet, when readers hold every buffer; see
	 * agent_endpoints). With AGENT_DISPATCH_HOST the calls are coalesced:
	 * a host that falls behind gets the newest published set once, not
	 * each one in between, and a set held back by readers is announced
	 * again once it is published. */
	void (*on_endpoints)(agent_t *a, const struct agent_endpoints *set,
			     void *ud);
};

/* 0, AGENT_E_INVALID (NULL a or cb), or AGENT_E_STATE once started. */
int agent_set_callbacks(agent_t *a, const struct agent_callbacks *cb);

/* ---- running ---------------------------------------------------------- */

/*
 * Start the agent thread, which connects at once. 0, or AGENT_E_STATE
 * (already started), AGENT_E_LWS, AGENT_E_THREAD, AGENT_E_NOMEM. When it
 * fails no callback is ever called and the agent may be destroyed (or started
 * again).
 */
int agent_start(agent_t *a);

/*
 * Stop the link (close 1000), join the agent thread and free everything. With
 * AGENT_DISPATCH_HOST, callbacks still queued are dropped. NULL is a no-op.
 * Waits at most about two seconds for the close to go out. No callback runs
 * after it returns (see "Threads" for the last ones, which run during it).
 * Called from a callback on the agent thread it cannot join that thread:
 * it then does nothing (and logs destroy_refused); from a callback run by
 * agent_dispatch it is undefined. Both are bugs in the caller.
 */
void agent_destroy(agent_t *a);

/* ---- readiness -------------------------------------------------------- */

/*
 * The flag of dependency `service`: false if it is not ready, unknown, or not
 * a dependency. A lookup in a table fixed at creation and an acquire load: no
 * lock, any thread.
 */
bool agent_is_ready(const agent_t *a, const char *service);

/* Every depends_on entry is ready (true when there are none). Lock-free. */
bool agent_all_ready(const agent_t *a);

#if !defined(__cplusplus)
/*
 * The flag itself, for hot paths: atomic_load_explicit(flag,
 * memory_order_acquire). NULL if `service` is not a dependency. Owned by the
 * agent; valid until agent_destroy.
 */
const atomic_bool *agent_ready_flag(const agent_t *a, const char *service);
#endif

/* The dependencies, in the sorted order the table holds them. Names are owned
 * by the agent and valid until agent_destroy; NULL past the end. */
size_t agent_dependency_count(const agent_t *a);
const char *agent_dependency_name(const agent_t *a, size_t i);

/*
 * Report this instance's own readiness. Any thread, before or after
 * agent_start. The agent sends it after every welcome (so a reconnect
 * restores it) and whenever it changes. 0, or AGENT_E_INVALID.
 */
int agent_set_ready(agent_t *a, bool ready);
/*
 * Say this instance is draining (alive, wanting no new work: it leaves its
 * service's ready endpoints and counts as not ready), or no longer is; and
 * report its load, 0.0 to 1.0. Any thread, before or after agent_start;
 * each change is sent as agent_set_ready's are. 0, or AGENT_E_INVALID
 * (a load outside 0-1, NaN).
 */
int agent_set_draining(agent_t *a, bool draining);
int agent_set_load(agent_t *a, double load);

/* ---- introspection ---------------------------------------------------- */

/* The daemon has welcomed the current link. Lock-free, any thread. */
bool agent_is_linked(const agent_t *a);

struct agent_info {
	char service[64];   /* this instance's service */
	char instance[129]; /* and instance id (the hostname by default) */
	bool started;
	bool linked;
	char url[AGENT_URL_MAX]; /* the current or last URL; "" before any */
	char node[129];          /* the daemon node of the last welcome */
	char epoch[65];          /* "" before the first welcome */
	uint64_t seq;     /* the last event seq seen (or the welcome's) */
	uint64_t links;   /* welcomes received */
	uint64_t events;  /* events received (not counting duplicates) */
	uint32_t attempt; /* attempts since the last welcome */
};

/* Fill *out with a consistent snapshot. Any thread. 0 or AGENT_E_INVALID. */
int agent_info(const agent_t *a, struct agent_info *out);

/* Change the level of the lines given to on_log. Any thread. */
int agent_set_log_level(agent_t *a, enum agent_log_level level);

/* ---- host event loop (AGENT_DISPATCH_HOST) ---------------------------- */

/*
 * A file descriptor (an eventfd) that becomes readable when callbacks are
 * pending. Owned by the agent: do not read or close it; poll it for POLLIN /
 * EPOLLIN only, and take it out of your poll set before agent_destroy,
 * which closes it. AGENT_E_NOTHOST without AGENT_DISPATCH_HOST.
 */
int agent_fd(agent_t *a);

/*
 * Run the pending callbacks on the calling thread, in order; returns how
 * many ran (0 if none), or AGENT_E_NOTHOST. Call it from one thread at a
 * time (typically the host loop's). Never blocks.
 */
int agent_dispatch(agent_t *a);

#ifdef __cplusplus
}
#endif

#endif
