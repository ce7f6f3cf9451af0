/*
 * loadgen.h: what the load generator's files share. loadgen is the
 * benchmarks' measuring instrument: N links (WebSocket, or raw TCP for
 * Redis, NATS and MQTT) to one or more servers, held by forked workers on
 * plain epoll, each link timestamping the arrival of the event that one
 * trigger (an HTTP call, or a publish) makes the server broadcast. The parent
 * forks the workers, makes the trigger calls and turns the workers' timestamps
 * into figures.
 *
 *   main.c     options, and the run from start to report
 *   parent.c   forking workers and talking to them over pipes
 *   worker.c   one worker: links, the epoll loop, the storm and the rounds
 *   ws.c       the WebSocket client: upgrade request and answer, framing
 *   tcp.c      raw TCP subscribers: Redis pub/sub, NATS, MQTT 3.1.1
 *   dialect.c  what the messages mean (discovery.v1, plain, Engine.IO)
 *   pub.c      publish requests and their answers (HTTP, Redis, NATS, MQTT)
 *   trigger.c  the trigger call of one round
 *   sustain.c  sustained delivery: closed and open loop publishers
 *   report.c   server RSS, percentiles and the JSON report
 */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LINK_BUF    1024 /* bytes of input kept per link */
#define MAX_OUT     512  /* largest frame payload we send */
#define MAX_SRC     64   /* source addresses (-b) */
#define MAX_TARGETS 64   /* servers the links spread over (-a) */
#define MAX_PIDS    16   /* server processes whose RSS is read */
#define MAX_PROCS   64   /* workers (-P) */
#define MAX_ERR_LOG 5    /* error lines per worker */
#define UPGRADE_MAX 512  /* bytes of one upgrade request */
#define STALL_NS    (10LL * 1000000000LL) /* storm: no welcome this long */
#define CTL_TAG     UINT64_MAX            /* epoll tag of the control pipe */

/* What the server speaks over the WebSocket (-m). */
enum dialect {
	DIALECT_DISCOVERY, /* discovery.v1: hello, welcome, events */
	DIALECT_PLAIN, /* no subprotocol: linked at 101, any text is the event
			*/
	DIALECT_ENGINEIO, /* Engine.IO v4 websocket transport, socket.io v5 */
	/* Raw TCP, no WebSocket (tcp.c); the trigger is a publish on -H. */
	DIALECT_REDIS, /* RESP: SUBSCRIBE, PUBLISH */
	DIALECT_NATS,  /* NATS: CONNECT, SUB, PUB, PING/PONG */
	DIALECT_MQTT,  /* MQTT 3.1.1: CONNECT, SUBSCRIBE QoS 0, PUBLISH */
};

#define DIALECT_TCP(d) ((d) >= DIALECT_REDIS)
#define CHANNEL        "bench" /* the channel, subject or topic */

struct opts {
	struct sockaddr_in targets[MAX_TARGETS];
	const char *target_names[MAX_TARGETS];
	int ntargets;
	const char *http, *service, *prefix, *binds, *body, *path;
	/* -e: each link watches this service's endpoints, and the timed
	 * message is its endpoints update; -F: the trigger is a line to this
	 * FIFO (an agent_probe's stdin) instead of an HTTP call. */
	const char *watch, *fifo;
	int fifo_fd;
	long fifo_rounds; /* lines written: "ready 0" and "ready 1" in turn */
	double gap_s;     /* -G: pause before each round's trigger */
	char method[16], trigger_path[256];
	enum dialect dialect;
	long n, procs, rounds, warmup, inflight;
	double timeout_s, idle_s, storm_s;
	long pids[MAX_PIDS];
	int npids;
	struct sockaddr_in http_sa;
	struct sockaddr_in src[MAX_SRC];
	int nsrc;
	/* -Z: the sustained phases' window (0: none), -K publishes in flight
	 * in the closed loop, -O publisher connections in the open loop. */
	double sustain_s;
	long closed_inflight, open_publishers;
	struct shared *shm;
	int done_rd, done_wr; /* workers tell the parent a seq is delivered */
};

enum lstate { L_IDLE, L_CONNECTING, L_UPGRADING, L_HELLO, L_LIVE, L_DEAD };

/* What the message arriving on a link is, by its first bytes. */
enum kind {
	K_OTHER,
	K_WELCOME, /* the link is linked (welcome, socket.io connect) */
	K_EVENT,   /* the broadcast being timed */
	K_OPEN,    /* Engine.IO open: answer with a namespace connect */
	K_PING,    /* Engine.IO ping: answer with a pong */
};

struct link {
	int fd;
	uint8_t state;    /* enum lstate */
	uint8_t kind;     /* enum kind of the message arriving */
	uint8_t skip_fin; /* the skipped frame ends a message */
	uint32_t len;     /* bytes in buf */
	uint64_t skip;    /* payload still to discard */
	uint64_t seq;     /* seq of the message arriving */
	int64_t t_event;  /* this round's event, ns; 0 = none */
	uint64_t ev_seq;
	char buf[LINK_BUF + 1];
};

/* What a worker tells the parent. */
struct storm_msg {
	int64_t t_first, t_last;
	uint32_t welcomed, failed;
};
struct round_msg {
	uint32_t n, closed;
};
struct hit {
	int64_t t;
	uint64_t seq;
};

/* Sustained delivery (sustain.c): what the parent and the workers share,
 * mapped before the fork. The parent writes each publish's t0 by seq;
 * the workers read it to time each delivery. */
#define SEQ_RING    4096
#define HIST_SUB    32 /* log-linear latency buckets: 32 per power of 2 */
#define HIST_N      (48 * HIST_SUB)
#define PEND_MAX    65536 /* deliveries waiting for their seq's t0 */
#define MODE_ROUNDS 0
#define MODE_CLOSED 1
#define MODE_OPEN   2

struct shared {
	_Atomic int mode;
	_Atomic int64_t win_start, win_end;
	struct {
		_Atomic uint64_t seq;
		_Atomic int64_t t0;
	} t0[SEQ_RING];
};

struct sustain_stats {
	uint64_t delivered[3]; /* in the window, by mode */
	uint64_t unmatched;    /* closed loop: no t0 found for the seq */
	uint32_t hist[HIST_N]; /* closed loop: latency, log-linear */
};

struct worker {
	const struct opts *o;
	int ep, ctl, res;
	struct link *links;
	uint32_t n, base, next;
	uint32_t inflight, max_inflight;
	uint32_t welcomed, failed, live, closed;
	int64_t t_first, t_last, last_progress;
	bool storm_sent, armed, quit;
	uint32_t got, expected;
	int64_t deadline;
	struct hit *hits;
	char (*upgrade)[UPGRADE_MAX]; /* one request per target */
	size_t *upgrade_len;
	uint32_t rng;
	int errors;
	/* sustained delivery: per-seq counts (the seq's slot holds it), the
	 * deliveries waiting for their t0, and what goes to the parent */
	struct {
		uint64_t seq;
		uint32_t count;
	} * seen;
	struct hit *pending;
	uint32_t npending;
	struct sustain_stats *stats;
};

/* main.c */
int64_t mono_ns(void);
int write_full(int fd, const void *p, size_t n);
int read_full(int fd, void *p, size_t n);

/* worker.c */
int worker_run(const struct opts *o, uint32_t base, uint32_t n, int ctl,
	       int res);
void link_fail(struct worker *w, struct link *l, const char *why);
void link_fail_errno(struct worker *w, struct link *l, const char *what);
void link_welcomed(struct worker *w, struct link *l);

/* tcp.c */
int tcp_greet(struct worker *w, struct link *l);
int tcp_input(struct worker *w, struct link *l);

/* ws.c */
int ws_upgrade_request(const struct opts *o, int target, char *buf, size_t cap);
int ws_send(struct worker *w, struct link *l, int op, const void *payload,
	    size_t len);
int ws_input(struct worker *w, struct link *l);

/* dialect.c */
const char *dialect_path(const struct opts *o);
const char *dialect_subprotocol(const struct opts *o);
int dialect_upgraded(struct worker *w, struct link *l);
void dialect_message_start(const struct worker *w, struct link *l, int op,
			   const char *p, size_t n);
int dialect_message_end(struct worker *w, struct link *l);
uint64_t dialect_find_seq(const char *p, size_t n);
void dialect_event(struct worker *w, struct link *l, const char *p, size_t n);
int dialect_parse(const char *s);

/* parent.c */
struct child {
	pid_t pid;
	int ctl, res;
	uint32_t base, n;
};

struct round {
	double p50, p99, last, http_ms;
	long missed, foreign;
	int status;
};

struct run {
	int64_t t_first, t_last;
	long welcomed, failed, closed;
	long rss_before, rss_storm, rss_idle;
	long nrounds; /* measured rounds (after warm-up) */
	struct round *rounds;
};

int parent_raise_nofile(const struct opts *o);
int parent_spawn_all(const struct opts *o, struct child *ch);
void parent_stop_all(const struct opts *o, struct child *ch);
int parent_collect_storm(const struct opts *o, struct child *ch,
			 struct run *run);
int parent_run_rounds(const struct opts *o, struct child *ch, struct run *run);

/* trigger.c */
struct trigger {
	int64_t t0;
	int status;
	uint64_t seq;
	double http_ms;
};

int trigger_call(const struct opts *o, struct trigger *t);

/* pub.c: one publisher connection's requests and answers */
#define PUB_BUF 4096
struct answer {
	int status;   /* HTTP status; 200 for a peer's acknowledgement */
	uint64_t seq; /* HTTP: the answer's "seq" */
	bool close;   /* the server closes after this answer */
	bool ping;    /* NATS asked for a PONG: not an answer */
	bool ignore;  /* a greeting (INFO, CONNACK, +OK): not an answer */
};

int pub_connect(const struct opts *o, int k);
int pub_hello(const struct opts *o, int k, char *buf, size_t cap);
int pub_request(const struct opts *o, uint64_t seq, char *buf, size_t cap);
ssize_t pub_answer(const struct opts *o, const char *buf, size_t len,
		   struct answer *a);
int pub_event(uint64_t seq, char *buf, size_t cap);
uint64_t pub_next_seq(void);

/* sustain.c */
struct sustain_run {
	double deliveries_per_s[3], p50_ms, p99_ms, cpu_us[3];
	long publishes[3], timeouts[3], errors[3];
	uint64_t unmatched;
};

int sustain_map(struct opts *o);
int sustain_run(const struct opts *o, struct child *ch, struct sustain_run *s);
void sustain_delivery(struct worker *w, struct link *l);
void sustain_resolve(struct worker *w);
int sustain_report(struct worker *w);
void sustain_print(const struct opts *o, const struct sustain_run *s);

/* report.c */
long report_rss_kb(const struct opts *o);
void report_round(struct round *rd, double *lat, size_t n);
long report_missed(const struct run *run);
void report_print(const struct opts *o, const struct run *run,
		  const struct sustain_run *s);
long report_cpu_ticks(const struct opts *o);

#endif
