/*
 * test_agent_link: libagent's link (agent/lib/link.c) against a scripted
 * daemon.
 *
 * The test thread plays discoveryd over a real socket (its socket side is
 * support/ws_daemon.c): it accepts the agent's connection, answers the
 * WebSocket handshake, reads the agent's frames and sends exactly the
 * frames (and misbehaviour) each case needs,
 * while the agent runs on its own thread with real libwebsockets. What is
 * checked is what only the link can get wrong: the handshake (subprotocol,
 * token, a token file re-read per attempt), reassembly of fragmented and
 * chunked messages and its cap, heartbeat and welcome timeouts, close codes
 * both ways, reconnect with resume (and the welcome's replay count), URL
 * rotation, stopping while connecting or linked, and reading paused by a
 * full host queue without losing an event.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../agent/lib/agent_int.h"
#include "support/ws_daemon.h"

/* ---- what the agent reported ------------------------------------------- */

#define MAX_SEEN 256

struct seen {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int connecting, linked, unlinked;
	char connect_url[16][AGENT_URL_MAX];
	uint32_t connect_attempt[16];
	int close_code; /* of the last UNLINKED */
	char reason[160];
	bool was_linked;
	uint32_t retry_ms;
	bool last_reset;
	int events;
	uint64_t seqs[MAX_SEEN];
	bool replayed[MAX_SEEN];
	size_t last_json_len;
};

static void seen_init(struct seen *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
}

static void seen_release(struct seen *s)
{
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
}

/* Wait until *field (under s->mu) reaches at least n. */
static bool wait_for(struct seen *s, const int *field, int n, int ms)
{
	int64_t deadline = now_ms() + ms;
	struct timespec ts;
	bool ok;

	pthread_mutex_lock(&s->mu);
	while (*field < n && now_ms() < deadline) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	ok = *field >= n;
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static void on_link(agent_t *a, enum agent_link_state state,
		    const struct agent_link_info *info, void *ud)
{
	struct seen *s = ud;

	(void)a;
	pthread_mutex_lock(&s->mu);
	if (state == AGENT_LINK_CONNECTING) {
		if (s->connecting < 16) {
			snprintf(s->connect_url[s->connecting], AGENT_URL_MAX,
				 "%s", info->url);
			s->connect_attempt[s->connecting] = info->attempt;
		}
		s->connecting++;
	} else if (state == AGENT_LINK_LINKED) {
		s->last_reset = info->reset;
		s->linked++;
	} else {
		s->close_code = info->close_code;
		snprintf(s->reason, sizeof(s->reason), "%s", info->reason);
		s->was_linked = info->was_linked;
		s->retry_ms = info->retry_ms;
		s->unlinked++;
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void on_event(agent_t *a, const struct agent_event *ev, void *ud)
{
	struct seen *s = ud;

	(void)a;
	pthread_mutex_lock(&s->mu);
	if (s->events < MAX_SEEN) {
		s->seqs[s->events] = ev->seq;
		s->replayed[s->events] = ev->replayed;
	}
	s->last_json_len = ev->json_len;
	s->events++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* TEST_LOG=1: the agent's log lines on stderr, to see why a case fails. */
static void on_log(enum agent_log_level level, const char *line, void *ud)
{
	(void)ud;
	fprintf(stderr, "%lld agent[%d] %s\n", (long long)(now_ms() % 100000),
		(int)level, line);
}

/* ---- agents ------------------------------------------------------------ */

struct opts {
	const char *urls[3];
	size_t n_urls;
	const char *token;
	const char *token_file;
	size_t max_message;
	enum agent_dispatch dispatch;
	size_t queue_max;
	uint32_t hb_interval, hb_timeout;
};

static agent_t *start_agent(const struct opts *o, struct seen *s)
{
	static const char *const deps[] = { "cache" };
	struct agent_config cfg;
	struct agent_callbacks cb = { .on_event = on_event,
				      .on_link = on_link,
				      .on_log = getenv("TEST_LOG") ? on_log :
								     NULL,
				      .ud = s };
	char err[256];
	agent_t *a;

	agent_config_init(&cfg);
	cfg.urls = o->urls;
	cfg.n_urls = o->n_urls;
	cfg.service = "web";
	cfg.instance = "web-1";
	cfg.depends_on = deps;
	cfg.n_depends_on = 1;
	cfg.token = o->token;
	cfg.token_file = o->token_file;
	cfg.backoff_initial_ms = 10;
	cfg.backoff_max_ms = 50;
	cfg.heartbeat_interval_ms = o->hb_interval ? o->hb_interval : 100;
	cfg.heartbeat_timeout_ms = o->hb_timeout ? o->hb_timeout : 1500;
	if (o->max_message)
		cfg.max_message = o->max_message;
	cfg.dispatch = o->dispatch;
	if (o->queue_max)
		cfg.queue_max = o->queue_max;
	cfg.log_level = AGENT_LOG_DEBUG;
	a = agent_new(&cfg, err, sizeof(err));
	if (!a)
		fail_msg("agent_new: %s", err);
	assert_int_equal(agent_set_callbacks(a, &cb), 0);
	assert_int_equal(agent_set_ready(a, true), 0);
	assert_int_equal(agent_start(a), 0);
	assert_int_equal(agent_start(a), AGENT_E_STATE);
	assert_int_equal(agent_set_callbacks(a, &cb), AGENT_E_STATE);
	return a;
}

static uint64_t agent_info_seq(agent_t *a)
{
	struct agent_info info;

	assert_int_equal(agent_info(a, &info), 0);
	return info.seq;
}

static void *destroy_thread(void *arg)
{
	agent_destroy(arg);
	return NULL;
}

/* Destroy a linked agent while this thread plays the daemon: the agent
 * says goodbye with 1000. (libwebsockets 4.1 drops the connection right
 * after its close frame, without waiting for ours.) */
static void destroy_linked(agent_t *a, int fd)
{
	pthread_t t;
	char reason[128];

	assert_int_equal(pthread_create(&t, NULL, destroy_thread, a), 0);
	assert_int_equal(expect_close(fd, WAIT_MS, reason, sizeof(reason)),
			 1000);
	assert_string_equal(reason, "agent stopping");
	pthread_join(t, NULL);
	close(fd);
}

/* ---- the tests ----------------------------------------------------------- */

/* An agent linked to our scripted daemon at lfd (welcome at seq 5). */
static agent_t *linked_agent(struct opts *o, char *url, int lfd, int port,
			     struct seen *s, int *fd, char *req, size_t cap)
{
	cJSON *hello, *status;
	agent_t *a;

	snprintf(url, 64, "ws://127.0.0.1:%d/agents?x=1", port);
	o->urls[0] = url;
	o->n_urls = 1;
	a = start_agent(o, s);
	*fd = link_up(lfd, req, cap, &hello);
	assert_int_equal(hello_resume_seq(hello), -1);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(hello, "instance")
				    ->valuestring,
			    "web-1");
	cJSON_Delete(hello);
	send_welcome(*fd, 5, false, 0, "{\"cache\":true}");
	status = expect_text(*fd, "status");
	assert_true(cJSON_IsTrue(
		cJSON_GetObjectItemCaseSensitive(status, "ready")));
	cJSON_Delete(status);
	assert_true(wait_for(s, &s->linked, 1, WAIT_MS));
	return a;
}

/* The handshake, fragmented and chunked messages, own readiness from
 * another thread, and the goodbye. */
static void test_link_and_frames(void **state)
{
	enum { BIG = 200 * 1000 };
	const char *ev = "{\"type\":\"event\",\"epoch\":\"" EPOCH
			 "\",\"seq\":6,"
			 "\"kind\":\"command\",\"command\":\"F\"}";
	struct opts o = { .token = "tok.123" };
	char url[64], req[8192], *big = malloc(BIG);
	struct seen s;
	cJSON *status;
	agent_t *a;
	int port, lfd = listen_any(&port), fd;
	size_t n;

	(void)state;
	seen_init(&s);
	a = linked_agent(&o, url, lfd, port, &s, &fd, req, sizeof(req));
	assert_non_null(strstr(req, "GET /agents?x=1 HTTP/1.1\r\n"));
	assert_non_null(
		strcasestr(req, "\r\nAuthorization: Bearer tok.123\r\n"));
	assert_non_null(
		strcasestr(req,
			   "\r\nSec-WebSocket-Protocol: discovery.v1\r\n"));
	assert_true(s.last_reset);
	assert_true(agent_is_ready(a, "cache"));
	assert_true(agent_is_linked(a));

	/* One event in three WebSocket fragments... */
	ws_send(fd, 1, false, ev, 10);
	ws_send(fd, 0, false, ev + 10, 20);
	ws_send(fd, 0, true, ev + 30, strlen(ev) - 30);
	/* ...one far bigger than libwebsockets' read chunk (and than the
	 * buffer kept between messages), then a small one. */
	n = (size_t)snprintf(big, BIG,
			     "{\"type\":\"event\",\"epoch\":\"" EPOCH
			     "\",\"seq\":7,\"kind\":\"command\","
			     "\"command\":\"B\",\"value\":\"");
	memset(big + n, 'v', BIG - n - 3);
	snprintf(big + BIG - 3, 3, "\"}");
	ws_text(fd, big);
	send_event(fd, 8);
	assert_true(wait_for(&s, &s.events, 3, WAIT_MS));
	assert_int_equal(s.seqs[0], 6);
	assert_int_equal(s.seqs[1], 7);
	assert_int_equal(s.seqs[2], 8);
	assert_int_equal(agent_info_seq(a), 8);
	free(big);

	/* Own readiness set from this thread reaches the daemon. */
	assert_int_equal(agent_set_ready(a, false), 0);
	status = expect_text(fd, "status");
	assert_true(cJSON_IsFalse(
		cJSON_GetObjectItemCaseSensitive(status, "ready")));
	cJSON_Delete(status);

	destroy_linked(a, fd);
	assert_int_equal(s.unlinked, 1);
	assert_int_equal(s.retry_ms, 0);
	close(lfd);
	seen_release(&s);
}

/* A dropped link, resume with a replay, the daemon's close code, and the
 * hello after the replay resuming from the welcome's seq. */
static void test_resume_replay(void **state)
{
	struct opts o = { 0 };
	char url[64], req[8192], reason[128];
	struct seen s;
	cJSON *hello;
	agent_t *a;
	int port, lfd = listen_any(&port), fd;

	(void)state;
	seen_init(&s);
	a = linked_agent(&o, url, lfd, port, &s, &fd, req, sizeof(req));
	send_event(fd, 7);
	assert_true(wait_for(&s, &s.events, 1, WAIT_MS));

	/* The daemon vanishes: no close frame. */
	close(fd);
	assert_true(wait_for(&s, &s.unlinked, 1, WAIT_MS));
	assert_int_equal(s.close_code, 1006);
	assert_true(s.was_linked);

	/* Resume: two missed events, the daemon's head at 20. */
	fd = link_up(lfd, req, sizeof(req), &hello);
	assert_int_equal(hello_resume_seq(hello), 7);
	cJSON_Delete(hello);
	send_welcome(fd, 20, true, 2, "{\"cache\":true}");
	send_event(fd, 9);
	send_event(fd, 12);
	assert_true(wait_for(&s, &s.events, 3, WAIT_MS));
	assert_false(s.replayed[0]);
	assert_true(s.replayed[1] && s.replayed[2]);
	assert_int_equal(agent_info_seq(a), 20);
	send_close(fd, 1001, "restarting");
	assert_int_equal(expect_close(fd, WAIT_MS, reason, sizeof(reason)),
			 1001);
	close(fd);
	assert_true(wait_for(&s, &s.unlinked, 2, WAIT_MS));
	assert_int_equal(s.close_code, 1001);
	assert_string_equal(s.reason, "restarting");

	/* Caught up with the welcome: resume from 20, not 12. */
	fd = link_up(lfd, req, sizeof(req), &hello);
	assert_int_equal(hello_resume_seq(hello), 20);
	cJSON_Delete(hello);
	send_welcome(fd, 20, true, 0, "{\"cache\":true}");
	assert_true(wait_for(&s, &s.linked, 3, WAIT_MS));
	destroy_linked(a, fd);
	close(lfd);
	seen_release(&s);
}

static void run_bad_input(int (*misbehave)(int fd), int want_code,
			  size_t max_message)
{
	struct opts o = { .n_urls = 1, .max_message = max_message };
	char url[64], req[4096], reason[128];
	struct seen s;
	cJSON *hello;
	agent_t *a;
	int port, lfd = listen_any(&port), fd;

	seen_init(&s);
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", port);
	o.urls[0] = url;
	a = start_agent(&o, &s);
	fd = link_up(lfd, req, sizeof(req), &hello);
	cJSON_Delete(hello);
	send_welcome(fd, 1, false, 0, "{}");
	assert_true(wait_for(&s, &s.linked, 1, WAIT_MS));
	misbehave(fd);
	assert_int_equal(expect_close(fd, WAIT_MS, reason, sizeof(reason)),
			 want_code);
	close(fd);
	assert_true(wait_for(&s, &s.unlinked, 1, WAIT_MS));
	assert_int_equal(s.close_code, want_code);
	assert_int_equal(s.events, 0);
	/* And it comes back. */
	fd = accept_within(lfd, WAIT_MS);
	assert_true(fd >= 0);
	close(fd);
	agent_destroy(a);
	close(lfd);
	seen_release(&s);
}

/* Fragments that add up past max_message: 1009 before the whole arrives. */
static int too_big(int fd)
{
	char chunk[600];

	memset(chunk, ' ', sizeof(chunk));
	chunk[0] = '{';
	ws_send(fd, 1, false, chunk, sizeof(chunk));
	ws_send(fd, 0, false, chunk + 1, sizeof(chunk) - 1);
	return 0;
}

static void test_message_too_big(void **state)
{
	(void)state;
	run_bad_input(too_big, 1009, 1024);
}

static int binary(int fd)
{
	ws_send(fd, 2, true, "\x01\x02", 2);
	return 0;
}

static void test_binary_frame(void **state)
{
	(void)state;
	run_bad_input(binary, 1003, 0);
}

static int not_json(int fd)
{
	ws_text(fd, "{\"type\":");
	return 0;
}

static void test_invalid_json(void **state)
{
	(void)state;
	run_bad_input(not_json, 1007, 0);
}

/* A linked daemon that stops answering (pings included): dropped after
 * heartbeat_timeout, without a close handshake, then tried again. */
static void test_heartbeat_timeout(void **state)
{
	struct opts o = { .n_urls = 1, .hb_interval = 50, .hb_timeout = 300 };
	char url[64], req[4096], buf[4096];
	struct seen s;
	cJSON *hello;
	agent_t *a;
	int port, lfd = listen_any(&port), fd, fd2;
	int64_t t0;
	size_t len;

	(void)state;
	seen_init(&s);
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", port);
	o.urls[0] = url;
	a = start_agent(&o, &s);
	fd = link_up(lfd, req, sizeof(req), &hello);
	cJSON_Delete(hello);
	send_welcome(fd, 1, false, 0, "{}");
	assert_true(wait_for(&s, &s.linked, 1, WAIT_MS));
	t0 = now_ms();
	/* Silent: read and ignore everything, pings too. */
	while (ws_next(fd, 100, true, buf, sizeof(buf), &len) != -1 &&
	       now_ms() - t0 < WAIT_MS)
		;
	assert_true(wait_for(&s, &s.unlinked, 1, WAIT_MS));
	assert_int_equal(s.close_code, 1006);
	assert_string_equal(s.reason, "heartbeat timeout");
	fd2 = accept_within(lfd, WAIT_MS);
	assert_true(fd2 >= 0);
	close(fd2);
	close(fd);
	agent_destroy(a);
	close(lfd);
	seen_release(&s);
}

/* A daemon that upgrades but never welcomes: 1008 after the timeout. */
static void test_welcome_timeout(void **state)
{
	struct opts o = { .n_urls = 1, .hb_interval = 50, .hb_timeout = 300 };
	char url[64], req[4096], reason[128];
	struct seen s;
	cJSON *hello;
	agent_t *a;
	int port, lfd = listen_any(&port), fd;

	(void)state;
	seen_init(&s);
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", port);
	o.urls[0] = url;
	a = start_agent(&o, &s);
	fd = link_up(lfd, req, sizeof(req), &hello);
	cJSON_Delete(hello);
	assert_int_equal(expect_close(fd, WAIT_MS, reason, sizeof(reason)),
			 1008);
	assert_string_equal(reason, "no welcome in time");
	close(fd);
	assert_true(wait_for(&s, &s.unlinked, 1, WAIT_MS));
	assert_false(s.was_linked);
	agent_destroy(a);
	close(lfd);
	seen_release(&s);
}

/* An agent given two URLs (buffers of 64 bytes) on those ports. */
static agent_t *start_two(struct opts *o, struct seen *s, char *url0, int port0,
			  char *url1, int port1)
{
	seen_init(s);
	snprintf(url0, 64, "ws://127.0.0.1:%d/", port0);
	snprintf(url1, 64, "ws://127.0.0.1:%d/", port1);
	o->urls[0] = url0;
	o->urls[1] = url1;
	o->n_urls = 2;
	return start_agent(o, s);
}

/*
 * The first URL accepts connections and never answers the handshake; the
 * attempt must end (it used to hang until libwebsockets gave up, then keep
 * a freed connection) and the agent move on to the second URL.
 */
static void test_silent_server_then_next_url(void **state)
{
	struct opts o = { .n_urls = 2, .hb_interval = 50, .hb_timeout = 300 };
	char url0[64], url1[64], req[4096];
	struct seen s;
	cJSON *hello;
	agent_t *a;
	int port0, port1, silent = listen_any(&port0), lfd = listen_any(&port1);
	int held, fd;

	(void)state;
	a = start_two(&o, &s, url0, port0, url1, port1);
	held = accept_within(silent, WAIT_MS);
	assert_true(held >= 0);
	fd = link_up(lfd, req, sizeof(req), &hello);
	cJSON_Delete(hello);
	assert_true(wait_for(&s, &s.unlinked, 1, WAIT_MS));
	assert_false(s.was_linked);
	assert_string_equal(s.reason, "no welcome in time");
	assert_string_equal(s.connect_url[0], url0);
	assert_string_equal(s.connect_url[1], url1);
	assert_int_equal(s.connect_attempt[0], 1);
	assert_int_equal(s.connect_attempt[1], 2);
	send_welcome(fd, 1, false, 0, "{}");
	assert_true(wait_for(&s, &s.linked, 1, WAIT_MS));
	destroy_linked(a, fd);
	close(held);
	close(silent);
	close(lfd);
	seen_release(&s);
}

/*
 * A link closed with 1012 and the drain hint goes on to the next URL, after
 * a delay within the hint's spread (not the backoff); a 1012 without the
 * hint (a cluster's history reset) links again to the same URL.
 */
static void test_drain_moves_on(void **state)
{
	struct opts o = { .n_urls = 2 };
	char url0[64], url1[64], req[4096], reason[128];
	int port0, port1, lfd0 = listen_any(&port0), lfd1 = listen_any(&port1);
	struct seen s;
	cJSON *hello;
	agent_t *a;
	int fd;

	(void)state;
	a = start_two(&o, &s, url0, port0, url1, port1);
	fd = link_up(lfd0, req, sizeof(req), &hello);
	cJSON_Delete(hello);
	send_welcome(fd, 1, false, 0, "{}");
	assert_true(wait_for(&s, &s.linked, 1, WAIT_MS));
	send_close(fd, 1012, "cluster history reset");
	expect_close(fd, WAIT_MS, reason, sizeof(reason)); /* lws says 1002 */
	close(fd);
	fd = link_up(lfd0, req, sizeof(req), &hello); /* the same URL */
	assert_true(hello_resume_seq(hello) >= 0);
	cJSON_Delete(hello);
	send_welcome(fd, 1, true, 0, "{}");
	assert_true(wait_for(&s, &s.linked, 2, WAIT_MS));
	send_close(fd, 1012, "drain spread_ms=300");
	expect_close(fd, WAIT_MS, reason, sizeof(reason));
	close(fd);
	fd = link_up(lfd1, req, sizeof(req), &hello); /* the next one */
	cJSON_Delete(hello);
	assert_int_equal(s.close_code, 1012);
	assert_string_equal(s.reason, "drain spread_ms=300");
	assert_true(s.was_linked);
	assert_true(s.retry_ms <= 300);
	assert_string_equal(s.connect_url[s.connecting - 1], url1);
	send_welcome(fd, 1, true, 0, "{}");
	assert_true(wait_for(&s, &s.linked, 3, WAIT_MS));
	destroy_linked(a, fd);
	close(lfd0);
	close(lfd1);
	seen_release(&s);
}

/* Nobody listens: the URLs take turns, delays stay under the backoff cap. */
static void test_refused_rotation(void **state)
{
	struct opts o = { .n_urls = 2 };
	char url0[64], url1[64];
	struct seen s;
	agent_t *a;
	int64_t t0;

	(void)state;
	seen_init(&s);
	snprintf(url0, sizeof(url0), "ws://127.0.0.1:%d/", closed_port());
	snprintf(url1, sizeof(url1), "ws://127.0.0.1:%d/", closed_port());
	o.urls[0] = url0;
	o.urls[1] = url1;
	a = start_agent(&o, &s);
	assert_true(wait_for(&s, &s.connecting, 5, WAIT_MS));
	for (int i = 0; i < 5; i++) {
		assert_string_equal(s.connect_url[i], i % 2 ? url1 : url0);
		assert_int_equal(s.connect_attempt[i], (uint32_t)i + 1);
	}
	t0 = now_ms();
	agent_destroy(a);
	assert_true(now_ms() - t0 < 1000);
	seen_release(&s);
}

/* Destroy while an attempt hangs: prompt, and the attempt is reported. */
static void test_destroy_while_connecting(void **state)
{
	struct opts o = { .n_urls = 1,
			  .hb_timeout = 30000,
			  .hb_interval = 10000 };
	char url[64];
	struct seen s;
	agent_t *a;
	int port, silent = listen_any(&port), held;
	int64_t t0;

	(void)state;
	seen_init(&s);
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", port);
	o.urls[0] = url;
	a = start_agent(&o, &s);
	held = accept_within(silent, WAIT_MS);
	assert_true(held >= 0);
	assert_true(wait_for(&s, &s.connecting, 1, WAIT_MS));
	t0 = now_ms();
	agent_destroy(a);
	assert_true(now_ms() - t0 < 1000);
	assert_int_equal(s.unlinked, 1);
	assert_int_equal(s.retry_ms, 0);
	assert_false(s.was_linked);
	close(held);
	close(silent);
	seen_release(&s);
}

/* token_file is read at every attempt; a bad one keeps the last good
 * token. (A file of AGENT_TOKEN_MAX bytes or more once overflowed the
 * read buffer.) */
static void test_token_file(void **state)
{
	char path[] = "/tmp/test_agent_link_tokenXXXXXX";
	struct opts o = { .n_urls = 1 };
	char url[64], req[8192], big[AGENT_TOKEN_MAX + 200];
	struct seen s;
	cJSON *hello;
	agent_t *a;
	int port, lfd = listen_any(&port), fd, tf = mkstemp(path);
	FILE *f;

	(void)state;
	assert_true(tf >= 0);
	assert_int_equal(write(tf, "first.token\n", 12), 12);
	close(tf);
	seen_init(&s);
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", port);
	o.urls[0] = url;
	o.token_file = path;
	a = start_agent(&o, &s);

	fd = link_up(lfd, req, sizeof(req), &hello);
	cJSON_Delete(hello);
	assert_non_null(
		strcasestr(req, "\r\nAuthorization: Bearer first.token\r\n"));
	f = fopen(path, "w");
	fputs("second.token\r\n", f);
	fclose(f);
	close(fd);
	fd = link_up(lfd, req, sizeof(req), &hello);
	cJSON_Delete(hello);
	assert_non_null(
		strcasestr(req, "\r\nAuthorization: Bearer second.token\r\n"));

	/* Exactly AGENT_TOKEN_MAX bytes, and more: too long, kept the last. */
	for (size_t len = AGENT_TOKEN_MAX; len <= AGENT_TOKEN_MAX + 100;
	     len += 100) {
		memset(big, 'a', len);
		f = fopen(path, "w");
		fwrite(big, 1, len, f);
		fclose(f);
		close(fd);
		fd = link_up(lfd, req, sizeof(req), &hello);
		cJSON_Delete(hello);
		assert_non_null(strcasestr(req, "\r\nAuthorization: Bearer "
						"second.token\r\n"));
	}
	/* The longest token that fits. */
	memset(big, 'b', AGENT_TOKEN_MAX - 1);
	big[AGENT_TOKEN_MAX - 1] = '\n';
	f = fopen(path, "w");
	fwrite(big, 1, AGENT_TOKEN_MAX, f);
	fclose(f);
	close(fd);
	fd = link_up(lfd, req, sizeof(req), &hello);
	cJSON_Delete(hello);
	assert_non_null(strstr(req, "Bearer bbbbbbbb"));
	close(fd);
	agent_destroy(a);
	unlink(path);
	close(lfd);
	seen_release(&s);
}

/*
 * AGENT_DISPATCH_HOST with a queue of 2: the agent stops reading while the
 * host does not dispatch, and every event still arrives, in order, once it
 * does.
 */
static void test_host_queue_pauses_reading(void **state)
{
	struct opts o = { .n_urls = 1,
			  .dispatch = AGENT_DISPATCH_HOST,
			  .queue_max = 2 };
	char url[64], req[4096];
	struct seen s;
	cJSON *hello;
	agent_t *a;
	int port, lfd = listen_any(&port), fd, efd;
	int64_t deadline;

	(void)state;
	seen_init(&s);
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", port);
	o.urls[0] = url;
	a = start_agent(&o, &s);
	efd = agent_fd(a);
	assert_true(efd >= 0);
	fd = link_up(lfd, req, sizeof(req), &hello);
	cJSON_Delete(hello);
	send_welcome(fd, 1, false, 0, "{}");
	for (uint64_t seq = 2; seq <= 51; seq++)
		send_event(fd, seq);
	usleep(200 * 1000); /* let the agent fill its queue and pause */
	assert_int_equal(s.events, 0); /* nothing runs without the host */
	deadline = now_ms() + WAIT_MS;
	while (s.events < 50 && now_ms() < deadline) {
		struct pollfd p = { efd, POLLIN, 0 };

		if (poll(&p, 1, 100) == 1)
			assert_true(agent_dispatch(a) >= 0);
	}
	assert_int_equal(s.events, 50);
	for (int i = 0; i < 50; i++)
		assert_int_equal(s.seqs[i], (uint64_t)i + 2);
	/* The answers to our pings were not read while paused: the link
	 * must have survived that (no heartbeat timeout while paused). */
	assert_int_equal(s.unlinked, 0);
	destroy_linked(a, fd);
	close(lfd);
	seen_release(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_link_and_frames),
		cmocka_unit_test(test_resume_replay),
		cmocka_unit_test(test_message_too_big),
		cmocka_unit_test(test_binary_frame),
		cmocka_unit_test(test_invalid_json),
		cmocka_unit_test(test_heartbeat_timeout),
		cmocka_unit_test(test_welcome_timeout),
		cmocka_unit_test(test_silent_server_then_next_url),
		cmocka_unit_test(test_refused_rotation),
		cmocka_unit_test(test_drain_moves_on),
		cmocka_unit_test(test_destroy_while_connecting),
		cmocka_unit_test(test_token_file),
		cmocka_unit_test(test_host_queue_pauses_reading),
	};

	/* TEST_FILTER=test_token_file runs one case (cmocka's pattern). */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
