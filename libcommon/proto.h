/*
 * proto: the agent link's wire protocol (docs/protocol.md), subprotocol
 * discovery.v1, JSON text frames.
 *
 *   agent -> daemon   hello, status
 *   daemon -> agent   welcome, event, endpoints
 *
 * Decoding is strict: a frame must be one JSON object of a known type with
 * fields of the right types; unknown fields are ignored (forward
 * compatibility), but every known field is validated (service names by
 * proto_valid_name, string lengths, list sizes). Before cJSON sees a byte the
 * frame is checked against the size cap and its nesting depth is measured by
 * a scan that never recurses, so a hostile frame cannot exhaust the stack.
 *
 * Encoding returns a malloc'd buffer with `headroom` spare bytes before the
 * JSON text (LWS_PRE for libwebsockets, so the daemon can frame an event once
 * and write the same buffer to every link). The JSON starts at buf + headroom
 * and is *len bytes long, NUL-terminated after that.
 */
#ifndef DISCOVERY_PROTO_H
#define DISCOVERY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#define PROTO_SUBPROTOCOL "discovery.v1"

#define PROTO_NAME_MAX       63  /* service names: [a-z0-9][a-z0-9_.-]{0,62} */
#define PROTO_INSTANCE_MAX   128 /* instance ids: printable, no spaces */
#define PROTO_ADDRESS_MAX    259 /* a 253-byte name, ":", a port */
#define PROTO_EPOCH_MAX      64
#define PROTO_DEPENDS_MAX    64  /* depends_on entries */
#define PROTO_DEPTH_MAX      16  /* JSON nesting of a whole frame */
#define PROTO_COMMAND_MAX    64  /* an event's command, NUL included */
#define PROTO_TAGS_MAX       32  /* an instance's tags, each a name */
#define PROTO_HOST_MAX       253 /* an address's host: a DNS name at most */
#define PROTO_WEIGHT_MIN     1
#define PROTO_WEIGHT_MAX     1000
#define PROTO_WEIGHT_DEFAULT 100

/* Error codes (negative); each maps to a WebSocket close code. */
enum {
	PROTO_OK = 0,
	PROTO_E_TOOBIG = -1,  /* over the size cap: close 1009 */
	PROTO_E_JSON = -2,    /* not JSON, or nested too deep: close 1007 */
	PROTO_E_INVALID = -3, /* JSON, but not a valid message: close 1007 */
	PROTO_E_NOMEM = -4,   /* close 1011 */
};

enum proto_type {
	PROTO_HELLO = 1,
	PROTO_STATUS,
	PROTO_WELCOME,
	PROTO_EVENT,
	PROTO_ENDPOINTS,
};

/* What an instance says it is (status): only ready counts toward its
 * service's readiness; draining is alive but wants no new work. */
enum proto_state {
	PROTO_STATE_NOTREADY = 0,
	PROTO_STATE_READY,
	PROTO_STATE_DRAINING,
};

struct proto_hello {
	char service[PROTO_NAME_MAX + 1];
	char instance[PROTO_INSTANCE_MAX + 1];
	char address[PROTO_ADDRESS_MAX + 1]; /* host:port; "" when absent */
	size_t n_tags;
	char tags[PROTO_TAGS_MAX][PROTO_NAME_MAX + 1];
	unsigned weight; /* 1-1000; decoding gives 100 when absent, and an
			    encoder leaves out 0 and 100 */
	size_t n_depends;
	char depends_on[PROTO_DEPENDS_MAX][PROTO_NAME_MAX + 1];
	/* The services whose endpoints it wants: its depends_on ("watch":
	 * true), or a list of its own (at most PROTO_DEPENDS_MAX). */
	bool watch_deps;
	size_t n_watch;
	char watch[PROTO_DEPENDS_MAX][PROTO_NAME_MAX + 1];
	cJSON *meta; /* an object, owned; NULL when absent */
	bool has_resume;
	char resume_epoch[PROTO_EPOCH_MAX + 1];
	uint64_t resume_seq;
};

struct proto_status {
	bool ready; /* state == PROTO_STATE_READY */
	enum proto_state state;
	bool has_load;
	double load; /* 0.0-1.0, the instance's own utilisation */
};

struct proto_welcome {
	char node[PROTO_INSTANCE_MAX + 1];
	char epoch[PROTO_EPOCH_MAX + 1];
	uint64_t seq;
	bool recovered;
	uint64_t replay; /* recovered: how many missed events follow
			    (encoded only when recovered) */
	cJSON *services; /* object name -> bool, owned */
	/* Each watched service's endpoints: name -> {"index":N,
	 * "endpoints":[endpoint...]}, owned; NULL when it watches none. */
	cJSON *endpoints;
};

/*
 * A watched service's endpoints changed: the whole set (full), or what
 * changed since the set the agent holds at index since: apply gone (the
 * instance ids that left), then set (the endpoints added or changed).
 * Endpoints are objects that proto_check_endpoint accepts.
 */
struct proto_endpoints {
	char service[PROTO_NAME_MAX + 1];
	uint64_t index;
	bool full;
	uint64_t since; /* !full */
	cJSON *set;     /* array, owned: the set (full), or what changed */
	cJSON *gone;    /* array of instance ids, owned; NULL when full */
};

struct proto_event {
	char epoch[PROTO_EPOCH_MAX + 1];
	uint64_t seq;
	char kind[32]; /* "readiness", "invalidate", "command" */
	char command[PROTO_COMMAND_MAX]; /* e.g. "DataSend" */
	cJSON *header;                   /* object, owned; may be NULL */
	cJSON *value;                    /* any JSON, owned; may be NULL */
};

struct proto_msg {
	enum proto_type type;
	union {
		struct proto_hello hello;
		struct proto_status status;
		struct proto_welcome welcome;
		struct proto_event event;
		struct proto_endpoints endpoints;
	} u;
};

/*
 * Decode one frame of len bytes (need not be NUL-terminated). max_len caps the
 * frame (0: no cap beyond the depth limit). On success fills *msg, which the
 * caller releases with proto_msg_release. On failure returns a PROTO_E_* code
 * and a one-line reason in err (suitable as a close reason: at most 120
 * bytes); *msg needs no release.
 */
int proto_decode(const char *buf, size_t len, size_t max_len,
		 struct proto_msg *msg, char *err, size_t errlen);
void proto_msg_release(struct proto_msg *msg);

/*
 * Parse untrusted JSON text as strictly as a frame: nesting at most depth_limit
 * (measured first, without recursion), valid UTF-8, no NUL or control
 * characters, no \u0000 escape, numbers as RFC 8259 spells them (cJSON alone
 * takes 01 and 1.), nothing but whitespace after the value. Returns the tree
 * (the caller owns it), or NULL with a one-line reason in err. The HTTP API
 * parses request bodies with it too, so nothing reaches the log that an agent
 * would refuse to decode.
 */
cJSON *proto_parse_json(const char *buf, size_t len, int depth_limit, char *err,
			size_t errlen);

/*
 * Keep numbers as written. cJSON holds numbers as doubles, so
 * 9007199254740993 would print back as 9007199254740992, 1.50 as 1.5 and
 * 1e999 as null. Every number of tree (parsed from the len bytes of buf,
 * as proto_parse_json or cJSON read them) that would not print back
 * byte for byte becomes a raw node holding its own text (cJSON_IsRaw,
 * printed verbatim); the others stay numbers, so code that reads them is
 * unaffected. Returns 0, or -1 (out of memory, or a tree deeper than 64):
 * the tree is then partly converted, and still valid. Event payloads go
 * through it on every path: the API body, the journal, Redis, libagent.
 */
int proto_json_exact(cJSON *tree, const char *buf, size_t len);

/*
 * A plain decimal uint64 in the n bytes of s: digits only, no sign, space
 * or leading zero, at most 2^64 - 1 (strtoull takes " -1" as 2^64 - 1).
 */
bool proto_parse_u64(const char *s, size_t n, uint64_t *out);

/*
 * Measure the maximum nesting depth of JSON text without recursion; stops
 * counting past limit. Strings (with escapes) are skipped correctly.
 */
int proto_json_depth(const char *buf, size_t len, int limit);

/* Encoders: NULL on allocation failure. */
char *proto_encode_hello(const struct proto_hello *h, size_t headroom,
			 size_t *len);
char *proto_encode_status(const struct proto_status *st, size_t headroom,
			  size_t *len);
char *proto_encode_welcome(const struct proto_welcome *w, size_t headroom,
			   size_t *len);
/* header and value are not consumed. */
char *proto_encode_event(const struct proto_event *e, size_t headroom,
			 size_t *len);

/* Serialize any cJSON into a buffer with headroom (helper for the above). */
char *proto_print(const cJSON *json, size_t headroom, size_t *len);

/* Service names: [a-z0-9][a-z0-9_.-]{0,62}. */
bool proto_valid_name(const char *name);
/* Instance ids: 1..PROTO_INSTANCE_MAX printable ASCII bytes, no spaces. */
bool proto_valid_instance(const char *id);

/*
 * An endpoint's address, host:port (proto_addr.c): host is an IPv4 literal,
 * [IPv6] or a DNS name, port 1-65535. split writes host without brackets.
 */
bool proto_valid_address(const char *addr);
int proto_split_address(const char *addr, char *host, size_t hostlen,
			unsigned *port);
/*
 * One endpoint as the link carries it (docs/protocol.md, "Endpoints"):
 * instance, address (host:port), state, weight (1-1000, default 100), load
 * (0-1, optional), tags (at most PROTO_TAGS_MAX names), node. 0, or
 * PROTO_E_INVALID with a reason in err.
 */
int proto_check_endpoint(const cJSON *e, char *err, size_t errlen);
const char *proto_state_name(enum proto_state s);
int proto_state_parse(const char *name); /* -1: not a state */

/* The WebSocket close code for a PROTO_E_* error. */
int proto_close_code(int err);

/*
 * The drain hint: a node being drained closes its links with 1012 and the
 * reason "drain spread_ms=N": link again elsewhere (the next URL), after a
 * delay uniform in [0, N] ms, so that the node's agents arrive on the
 * others spread over N ms instead of at once. Any other 1012 reason keeps
 * its meaning (cluster mode: the history was reset; link again at once).
 * Unknown "key=value" words after "drain" are ignored (later additions).
 */
#define PROTO_DRAIN_SPREAD_MAX 600000 /* a hint never delays more */
/* Write the reason for spread_ms into out (at least 32 bytes). */
void proto_drain_reason(char *out, size_t size, uint32_t spread_ms);
/* True when reason is a drain hint; *spread_ms then holds its spread,
 * capped at PROTO_DRAIN_SPREAD_MAX (0 when it gives none). */
bool proto_drain_hint(const char *reason, uint32_t *spread_ms);

#endif
