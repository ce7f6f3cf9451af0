/*
 * test_agent_session: the discovery.v1 conversation above the link
 * (agent/lib/session.c) and how it reaches the application (notify.c).
 *
 * The frames a daemon sends are fed to session_frame as the link would, on
 * this thread, with no connection behind them (link_close and
 * link_want_write do nothing without a wsi). What is checked: the welcome
 * snapshot sets the flags; events move (epoch, seq), the flags and reach
 * on_event once; the hello resumes from the right place, in particular
 * from the welcome's seq once a recovered link's `replay` events are in;
 * on_disconnect; and the host-dispatch queue (order, deep copies, bounds).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/lib/agent_int.h"

#define EPOCH       "9f2c0000000000000000000000000001"
#define EPOCH2      "9f2c0000000000000000000000000002"
#define MAX_RECORDS 64

/* ---- what the callbacks saw ------------------------------------------- */

struct record {
	char what; /* 'r' readiness, 'e' event, 'l' link, 'g' log */
	char service[64];
	bool ready;
	uint64_t seq;
	bool replayed;
	char kind[32];
	char json[512];
	size_t n_keys;
	char keys[4][32];
	enum agent_link_state state;
	bool reset, recovered, resumed;
	char text[256];
};

struct seen {
	struct record r[MAX_RECORDS];
	size_t n;
	size_t logs;
};

static struct record *add(struct seen *s, char what)
{
	struct record *r;

	assert_true(s->n < MAX_RECORDS);
	r = &s->r[s->n++];
	memset(r, 0, sizeof(*r));
	r->what = what;
	return r;
}

static void on_readiness(agent_t *a, const char *service, bool ready, void *ud)
{
	struct record *r = add(ud, 'r');

	(void)a;
	snprintf(r->service, sizeof(r->service), "%s", service);
	r->ready = ready;
}

static void on_event(agent_t *a, const struct agent_event *ev, void *ud)
{
	struct record *r = add(ud, 'e');

	(void)a;
	r->seq = ev->seq;
	r->replayed = ev->replayed;
	r->ready = ev->ready;
	snprintf(r->kind, sizeof(r->kind), "%s", ev->kind);
	snprintf(r->service, sizeof(r->service), "%s",
		 ev->service ? ev->service : "");
	snprintf(r->json, sizeof(r->json), "%s", ev->json);
	assert_int_equal(strlen(ev->json), ev->json_len);
	r->n_keys = ev->n_keys;
	for (size_t i = 0; i < ev->n_keys && i < 4; i++)
		snprintf(r->keys[i], sizeof(r->keys[i]), "%s", ev->keys[i]);
	snprintf(r->text, sizeof(r->text), "%s|%s|%s", ev->command, ev->header,
		 ev->value);
}

static void on_link(agent_t *a, enum agent_link_state state,
		    const struct agent_link_info *info, void *ud)
{
	struct record *r = add(ud, 'l');

	(void)a;
	r->state = state;
	r->seq = info->seq;
	r->reset = info->reset;
	r->recovered = info->recovered;
	r->resumed = info->resumed;
	snprintf(r->text, sizeof(r->text), "%s",
		 info->epoch ? info->epoch : "");
}

static void on_log(enum agent_log_level level, const char *line, void *ud)
{
	struct seen *s = ud;

	(void)level;
	(void)line;
	s->logs++;
}

/* Records but the log lines, which are not part of the contract here. */
static struct record *nth(struct seen *s, size_t i)
{
	assert_true(i < s->n);
	return &s->r[i];
}

/* ---- an agent with no connection --------------------------------------- */

struct fixture {
	agent_t *a;
	struct seen seen;
};

static agent_t *make_agent(struct seen *seen, enum agent_dispatch dispatch,
			   enum agent_on_disconnect on_disconnect,
			   size_t queue_max, bool with_log)
{
	static const char *const urls[] = { "ws://127.0.0.1:1/" };
	static const char *const deps[] = { "cache", "api" };
	struct agent_config cfg;
	struct agent_callbacks cb = { .on_readiness = on_readiness,
				      .on_event = on_event,
				      .on_link = on_link,
				      .on_log = with_log ? on_log : NULL,
				      .ud = seen };
	char err[256];
	agent_t *a;

	agent_config_init(&cfg);
	cfg.urls = urls;
	cfg.n_urls = 1;
	cfg.service = "web";
	cfg.instance = "web-1";
	cfg.depends_on = deps;
	cfg.n_depends_on = 2;
	cfg.dispatch = dispatch;
	cfg.on_disconnect = on_disconnect;
	cfg.queue_max = queue_max;
	cfg.log_level = AGENT_LOG_DEBUG;
	a = agent_new(&cfg, err, sizeof(err));
	if (!a)
		fail_msg("agent_new: %s", err);
	assert_int_equal(agent_set_callbacks(a, &cb), 0);
	return a;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->a = make_agent(&f->seen, AGENT_DISPATCH_THREAD, AGENT_KEEP, 16,
			  false);
	*state = f;
	return 0;
}

static int setup_lock(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->a = make_agent(&f->seen, AGENT_DISPATCH_THREAD, AGENT_LOCK, 16,
			  false);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	agent_destroy(f->a);
	free(f);
	return 0;
}

static void feed(agent_t *a, const char *frame)
{
	session_frame(a, frame, strlen(frame));
}

static void welcome(agent_t *a, const char *epoch, uint64_t seq, bool recovered,
		    uint64_t replay, const char *services)
{
	char frame[512];

	snprintf(frame, sizeof(frame),
		 "{\"type\":\"welcome\",\"node\":\"node-a\",\"epoch\":\"%s\","
		 "\"seq\":%llu,\"recovered\":%s,\"replay\":%llu,\"services\":%"
		 "s}",
		 epoch, (unsigned long long)seq, recovered ? "true" : "false",
		 (unsigned long long)replay, services);
	feed(a, frame);
}

static void readiness(agent_t *a, const char *epoch, uint64_t seq,
		      const char *service, bool ready)
{
	char frame[512];

	snprintf(frame, sizeof(frame),
		 "{\"type\":\"event\",\"epoch\":\"%s\",\"seq\":%llu,"
		 "\"kind\":\"readiness\",\"command\":\"DataSend\","
		 "\"header\":{\"Ready\":true},"
		 "\"value\":{\"service\":\"%s\",\"ready\":%s}}",
		 epoch, (unsigned long long)seq, service,
		 ready ? "true" : "false");
	feed(a, frame);
}

static void command(agent_t *a, const char *epoch, uint64_t seq)
{
	char frame[256];

	snprintf(frame, sizeof(frame),
		 "{\"type\":\"event\",\"epoch\":\"%s\",\"seq\":%llu,"
		 "\"kind\":\"command\",\"command\":\"Reload\"}",
		 epoch, (unsigned long long)seq);
	feed(a, frame);
}

/* What link.c does when a link ends and the next one starts, as far as
 * the session sees it: unlinked, then a hello on the new connection. */
static void drop_link(agent_t *a)
{
	char *buf;
	size_t len;

	a->link.welcomed = false;
	atomic_store(&a->linked, false);
	session_unlinked(a);
	assert_int_equal(session_hello(a, &buf, &len), 0);
	free(buf);
}

/* The resume part of the next hello: has_resume, epoch, seq. */
static void expect_hello_resume(agent_t *a, bool has, const char *epoch,
				uint64_t seq)
{
	char *buf;
	size_t len;
	cJSON *hello, *resume;

	assert_int_equal(session_hello(a, &buf, &len), 0);
	hello = cJSON_ParseWithLength(buf + LWS_PRE, len);
	assert_non_null(hello);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(hello, "type")
				    ->valuestring,
			    "hello");
	resume = cJSON_GetObjectItemCaseSensitive(hello, "resume");
	if (!has) {
		assert_null(resume);
	} else {
		assert_non_null(resume);
		assert_string_equal(cJSON_GetObjectItemCaseSensitive(resume,
								     "epoch")
					    ->valuestring,
				    epoch);
		assert_int_equal((uint64_t)cJSON_GetObjectItemCaseSensitive(
					 resume, "seq")
					 ->valuedouble,
				 seq);
	}
	cJSON_Delete(hello);
	free(buf);
}

static uint64_t info_seq(agent_t *a)
{
	struct agent_info info;

	assert_int_equal(agent_info(a, &info), 0);
	return info.seq;
}

/* ---- the tests ----------------------------------------------------------- */

static void test_first_welcome(void **state)
{
	struct fixture *f = *state;
	struct agent_info info;
	struct record *r;

	expect_hello_resume(f->a, false, NULL, 0);
	assert_false(agent_is_linked(f->a));
	welcome(f->a, EPOCH, 57, false, 0, "{\"cache\":true,\"api\":false}");

	/* on_link first, then the flags the snapshot changed (api was
	 * already false: no call). */
	assert_int_equal(f->seen.n, 2);
	r = nth(&f->seen, 0);
	assert_int_equal(r->what, 'l');
	assert_int_equal(r->state, AGENT_LINK_LINKED);
	assert_true(r->reset);
	assert_false(r->recovered);
	assert_false(r->resumed);
	assert_int_equal(r->seq, 57);
	assert_string_equal(r->text, EPOCH);
	r = nth(&f->seen, 1);
	assert_int_equal(r->what, 'r');
	assert_string_equal(r->service, "cache");
	assert_true(r->ready);

	assert_true(agent_is_ready(f->a, "cache"));
	assert_false(agent_is_ready(f->a, "api"));
	assert_false(agent_all_ready(f->a));
	assert_true(agent_is_linked(f->a));
	assert_int_equal(agent_info(f->a, &info), 0);
	assert_int_equal(info.seq, 57);
	assert_int_equal(info.links, 1);
	assert_string_equal(info.epoch, EPOCH);
	assert_string_equal(info.node, "node-a");
	expect_hello_resume(f->a, true, EPOCH, 57);
}

static void test_events_move_seq_and_flags(void **state)
{
	struct fixture *f = *state;
	struct record *r;

	welcome(f->a, EPOCH, 57, false, 0, "{\"cache\":true,\"api\":false}");
	f->seen.n = 0;

	readiness(f->a, EPOCH, 58, "api", true);
	assert_int_equal(f->seen.n, 2); /* on_readiness, then on_event */
	assert_int_equal(nth(&f->seen, 0)->what, 'r');
	assert_string_equal(nth(&f->seen, 0)->service, "api");
	r = nth(&f->seen, 1);
	assert_int_equal(r->what, 'e');
	assert_int_equal(r->seq, 58);
	assert_false(r->replayed);
	assert_string_equal(r->kind, "readiness");
	assert_string_equal(r->service, "api");
	assert_true(r->ready);
	assert_string_equal(r->text, "DataSend|{\"Ready\":true}|{\"service\":"
				     "\"api\",\"ready\":true}");
	assert_true(agent_all_ready(f->a));
	assert_int_equal(info_seq(f->a), 58);

	/* A duplicate (or older) event is dropped: no callback, no move. */
	readiness(f->a, EPOCH, 58, "api", false);
	readiness(f->a, EPOCH, 40, "api", false);
	assert_int_equal(f->seen.n, 2);
	assert_true(agent_is_ready(f->a, "api"));

	/* seqs may skip; readiness of a service that is no dependency only
	 * reaches on_event; an event without header/value says "null". */
	readiness(f->a, EPOCH, 61, "other", false);
	command(f->a, EPOCH, 64);
	assert_int_equal(f->seen.n, 4);
	assert_string_equal(nth(&f->seen, 2)->service, "other");
	assert_string_equal(nth(&f->seen, 3)->text, "Reload|null|null");
	assert_int_equal(info_seq(f->a), 64);
	expect_hello_resume(f->a, true, EPOCH, 64);
}

static void test_invalidate_keys(void **state)
{
	struct fixture *f = *state;
	struct record *r;

	welcome(f->a, EPOCH, 1, false, 0, "{}");
	f->seen.n = 0;
	feed(f->a, "{\"type\":\"event\",\"epoch\":\"" EPOCH "\",\"seq\":2,"
		   "\"kind\":\"invalidate\",\"command\":\"DataSend\","
		   "\"header\":{\"CacheInvalidate\":true},"
		   "\"value\":{\"keys\":[\"a\",1,null,\"b\"]}}");
	assert_int_equal(f->seen.n, 1);
	r = nth(&f->seen, 0);
	assert_string_equal(r->kind, "invalidate");
	assert_int_equal(r->n_keys, 2); /* the string keys only */
	assert_string_equal(r->keys[0], "a");
	assert_string_equal(r->keys[1], "b");

	/* No keys array: n_keys 0. */
	feed(f->a, "{\"type\":\"event\",\"epoch\":\"" EPOCH "\",\"seq\":3,"
		   "\"kind\":\"invalidate\",\"command\":\"DataSend\","
		   "\"value\":{\"keys\":\"a\"}}");
	assert_int_equal(nth(&f->seen, 1)->n_keys, 0);
}

/*
 * The point of `replay`: after recovered:true and its replay, the agent is
 * at the welcome's seq, so the next hello does not ask again for a history
 * it already has (which the daemon may have dropped by then: a needless
 * reset).
 */
static void test_resume_replay_catches_up(void **state)
{
	struct fixture *f = *state;
	struct record *r;

	welcome(f->a, EPOCH, 57, false, 0, "{\"cache\":true,\"api\":false}");
	readiness(f->a, EPOCH, 58, "api", true);
	drop_link(f->a);
	expect_hello_resume(f->a, true, EPOCH, 58);
	f->seen.n = 0;

	/* Missed: 61 (api down) and 65 (a command); the daemon's head is 70
	 * (events 66..70 were for others). The snapshot says api is down. */
	welcome(f->a, EPOCH, 70, true, 2, "{\"cache\":true,\"api\":false}");
	r = nth(&f->seen, 0);
	assert_int_equal(r->state, AGENT_LINK_LINKED);
	assert_true(r->recovered);
	assert_true(r->resumed);
	assert_false(r->reset);
	assert_int_equal(nth(&f->seen, 1)->what, 'r'); /* api: true -> false */
	assert_false(nth(&f->seen, 1)->ready);
	/* Not yet caught up: a drop now must resume from 58. */
	expect_hello_resume(f->a, true, EPOCH, 58);

	readiness(f->a, EPOCH, 61, "api", false);
	r = nth(&f->seen, 2);
	assert_int_equal(r->what, 'e'); /* replays do not move flags */
	assert_true(r->replayed);
	assert_int_equal(r->seq, 61);
	expect_hello_resume(f->a, true, EPOCH, 61);

	command(f->a, EPOCH, 65);
	assert_true(nth(&f->seen, 3)->replayed);
	/* Both replays in: the agent is at the welcome's seq. */
	assert_int_equal(info_seq(f->a), 70);
	expect_hello_resume(f->a, true, EPOCH, 70);

	/* Live again; and nothing older than 70 is taken any more. */
	command(f->a, EPOCH, 66);
	assert_int_equal(f->seen.n, 4);
	readiness(f->a, EPOCH, 71, "api", true);
	assert_int_equal(f->seen.n, 6);
	assert_false(nth(&f->seen, 5)->replayed);
	assert_true(agent_is_ready(f->a, "api"));
	expect_hello_resume(f->a, true, EPOCH, 71);
}

static void test_resume_without_missed_events(void **state)
{
	struct fixture *f = *state;

	welcome(f->a, EPOCH, 10, false, 0, "{}");
	drop_link(f->a);
	welcome(f->a, EPOCH, 25, true, 0, "{}");
	assert_int_equal(info_seq(f->a), 25);
	expect_hello_resume(f->a, true, EPOCH, 25);
	command(f->a, EPOCH, 26);
	assert_false(f->seen.r[f->seen.n - 1].replayed);
}

static void test_link_lost_mid_replay(void **state)
{
	struct fixture *f = *state;

	welcome(f->a, EPOCH, 10, false, 0, "{}");
	drop_link(f->a);
	welcome(f->a, EPOCH, 30, true, 3, "{}");
	command(f->a, EPOCH, 12);
	drop_link(f->a);
	/* Two replays never came: resume from the last one that did. */
	expect_hello_resume(f->a, true, EPOCH, 12);
	welcome(f->a, EPOCH, 31, true, 3, "{}");
	command(f->a, EPOCH, 20);
	command(f->a, EPOCH, 25);
	command(f->a, EPOCH, 31);
	assert_int_equal(info_seq(f->a), 31);
	assert_true(f->seen.r[f->seen.n - 1].replayed);
}

/* A daemon that replays fewer events than it announced: the first live
 * event (past the welcome's seq) ends the replay. */
static void test_replay_ends_at_live_event(void **state)
{
	struct fixture *f = *state;

	welcome(f->a, EPOCH, 10, false, 0, "{}");
	drop_link(f->a);
	welcome(f->a, EPOCH, 30, true, 2, "{}");
	command(f->a, EPOCH, 12);
	command(f->a, EPOCH, 33);
	assert_false(f->seen.r[f->seen.n - 1].replayed);
	assert_int_equal(info_seq(f->a), 33);
}

static void test_not_recovered_is_reset(void **state)
{
	struct fixture *f = *state;
	struct record *r;

	welcome(f->a, EPOCH, 100, false, 0, "{\"cache\":true,\"api\":true}");
	drop_link(f->a);
	f->seen.n = 0;

	/* History lost (another epoch): reset, adopt the new position. */
	welcome(f->a, EPOCH2, 3, false, 0, "{\"cache\":true,\"api\":true}");
	r = nth(&f->seen, 0);
	assert_true(r->reset);
	assert_true(r->resumed);
	assert_int_equal(r->seq, 3);
	assert_int_equal(info_seq(f->a), 3);
	expect_hello_resume(f->a, true, EPOCH2, 3);

	/* recovered:true for another epoch than ours cannot be a resume. */
	drop_link(f->a);
	welcome(f->a, EPOCH, 9, true, 1, "{\"cache\":true,\"api\":true}");
	r = &f->seen.r[f->seen.n - 1];
	assert_int_equal(r->what, 'l');
	assert_true(r->reset);
	assert_false(r->recovered);
	expect_hello_resume(f->a, true, EPOCH, 9);
}

static void test_epoch_change_mid_link(void **state)
{
	struct fixture *f = *state;

	welcome(f->a, EPOCH, 50, false, 0, "{}");
	command(f->a, EPOCH2, 1);
	assert_int_equal(nth(&f->seen, f->seen.n - 1)->seq, 1);
	expect_hello_resume(f->a, true, EPOCH2, 1);
}

static void test_keep_on_disconnect(void **state)
{
	struct fixture *f = *state;

	welcome(f->a, EPOCH, 1, false, 0, "{\"cache\":true,\"api\":true}");
	f->seen.n = 0;
	drop_link(f->a);
	assert_false(agent_is_linked(f->a));
	assert_true(agent_all_ready(f->a));
	assert_int_equal(f->seen.n, 0);
}

static void test_lock_on_disconnect(void **state)
{
	struct fixture *f = *state;

	welcome(f->a, EPOCH, 1, false, 0, "{\"cache\":true,\"api\":true}");
	f->seen.n = 0;
	drop_link(f->a);
	assert_false(agent_is_ready(f->a, "cache"));
	assert_false(agent_is_ready(f->a, "api"));
	assert_int_equal(f->seen.n, 2);
	/* The table is sorted: api first. */
	assert_string_equal(nth(&f->seen, 0)->service, "api");
	assert_false(nth(&f->seen, 0)->ready);
	assert_string_equal(nth(&f->seen, 1)->service, "cache");

	/* The next welcome restores them. */
	welcome(f->a, EPOCH, 2, true, 0, "{\"cache\":true,\"api\":true}");
	assert_true(agent_all_ready(f->a));
}

/* What must not move anything: bad frames, events before the welcome, a
 * second welcome, a message type the daemon never sends. */
static void test_frames_that_move_nothing(void **state)
{
	struct fixture *f = *state;

	feed(f->a, "{\"type\":\"event\",\"epoch\":\"" EPOCH "\",\"seq\":5,"
		   "\"kind\":\"command\",\"command\":\"X\"}");
	assert_int_equal(f->seen.n, 0);
	assert_int_equal(info_seq(f->a), 0);

	welcome(f->a, EPOCH, 10, false, 0, "{}");
	f->seen.n = 0;
	feed(f->a, "not json");
	feed(f->a, "{\"type\":\"event\"}");
	feed(f->a, "{\"type\":\"status\",\"ready\":true}");
	feed(f->a, "[1,2,3]");
	feed(f->a, "{\"type\":\"event\",\"epoch\":\"" EPOCH "\",\"seq\":-1,"
		   "\"kind\":\"command\",\"command\":\"X\"}");
	welcome(f->a, EPOCH, 99, false, 0, "{\"cache\":true}");
	assert_int_equal(f->seen.n, 0);
	assert_false(agent_is_ready(f->a, "cache"));
	assert_int_equal(info_seq(f->a), 10);
}

static void test_dependency_table(void **state)
{
	struct fixture *f = *state;
	const atomic_bool *flag;

	assert_int_equal(agent_dependency_count(f->a), 2);
	assert_string_equal(agent_dependency_name(f->a, 0), "api");
	assert_string_equal(agent_dependency_name(f->a, 1), "cache");
	assert_null(agent_dependency_name(f->a, 2));
	assert_null(agent_ready_flag(f->a, "web"));
	assert_null(agent_ready_flag(f->a, NULL));
	assert_false(agent_is_ready(f->a, "nope"));
	flag = agent_ready_flag(f->a, "cache");
	assert_non_null(flag);
	assert_false(atomic_load_explicit(flag, memory_order_acquire));
	welcome(f->a, EPOCH, 1, false, 0, "{\"cache\":true}");
	assert_true(atomic_load_explicit(flag, memory_order_acquire));
	assert_int_equal(agent_fd(f->a), AGENT_E_NOTHOST);
	assert_int_equal(agent_dispatch(f->a), AGENT_E_NOTHOST);
}

/* ---- AGENT_DISPATCH_HOST --------------------------------------------- */

static bool fd_readable(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };

	return poll(&p, 1, 0) == 1;
}

static void test_host_dispatch_order_and_copies(void **state)
{
	struct seen seen = { .n = 0 };
	agent_t *a =
		make_agent(&seen, AGENT_DISPATCH_HOST, AGENT_KEEP, 16, false);
	char frame[256];
	struct record *r;
	int fd = agent_fd(a);

	(void)state;
	assert_true(fd >= 0);
	assert_false(fd_readable(fd));
	assert_int_equal(agent_dispatch(a), 0);

	welcome(a, EPOCH, 5, false, 0, "{\"cache\":true}");
	/* The frame buffer is gone (reused) before the host dispatches. */
	snprintf(frame, sizeof(frame),
		 "{\"type\":\"event\",\"epoch\":\"" EPOCH "\",\"seq\":6,"
		 "\"kind\":\"invalidate\",\"command\":\"DataSend\","
		 "\"value\":{\"keys\":[\"k1\",\"k2\"]}}");
	session_frame(a, frame, strlen(frame));
	memset(frame, 'x', sizeof(frame) - 1);

	/* Flags move at once, on the agent's side; callbacks wait. */
	assert_true(agent_is_ready(a, "cache"));
	assert_int_equal(seen.n, 0);
	assert_true(fd_readable(fd));
	assert_int_equal(agent_dispatch(a), 3);
	assert_false(fd_readable(fd));

	assert_int_equal(seen.n, 3);
	assert_int_equal(nth(&seen, 0)->what, 'l');
	assert_int_equal(nth(&seen, 0)->seq, 5);
	assert_string_equal(nth(&seen, 0)->text, EPOCH);
	assert_int_equal(nth(&seen, 1)->what, 'r');
	assert_string_equal(nth(&seen, 1)->service, "cache");
	r = nth(&seen, 2);
	assert_int_equal(r->what, 'e');
	assert_int_equal(r->n_keys, 2);
	assert_string_equal(r->keys[0], "k1");
	assert_string_equal(r->keys[1], "k2");
	assert_non_null(strstr(r->json, "\"seq\":6"));
	assert_int_equal(agent_dispatch(a), 0);
	agent_destroy(a);
}

static void test_host_queue_bounds(void **state)
{
	struct seen seen = { .n = 0 };
	agent_t *a =
		make_agent(&seen, AGENT_DISPATCH_HOST, AGENT_KEEP, 2, true);
	int ran;

	(void)state;
	welcome(a, EPOCH, 1, false, 0, "{}");
	/* Events are never dropped; the queue reports full for link.c to
	 * stop reading. */
	for (uint64_t seq = 2; seq < 12; seq++)
		command(a, EPOCH, seq);
	assert_true(notify_queue_full(a));
	/* Log lines are dropped past queue_max + slack, and counted. */
	for (int i = 0; i < 200; i++)
		notify_log(a, AGENT_LOG_INFO, "filler n=%d", i);
	ran = agent_dispatch(a);
	assert_false(notify_queue_full(a));
	/* Every event ran, in order. */
	assert_int_equal(seen.n, 11);
	for (size_t i = 1; i < seen.n; i++)
		assert_int_equal(nth(&seen, i)->seq, i + 1);
	assert_true(ran > 11 && ran < 11 + 200);
	/* The drop itself was reported to on_log (one more line). */
	assert_int_equal(seen.logs, (size_t)ran - 11 + 1);
	agent_destroy(a);
}

/* Destroying with callbacks queued frees them without running them. */
static void test_host_destroy_drops_queue(void **state)
{
	struct seen seen = { .n = 0 };
	agent_t *a =
		make_agent(&seen, AGENT_DISPATCH_HOST, AGENT_KEEP, 16, true);

	(void)state;
	welcome(a, EPOCH, 1, false, 0, "{\"cache\":true}");
	command(a, EPOCH, 2);
	agent_destroy(a);
	assert_int_equal(seen.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_welcome, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_events_move_seq_and_flags,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_keys, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_resume_replay_catches_up,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_resume_without_missed_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_lost_mid_replay,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_ends_at_live_event,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_recovered_is_reset,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_epoch_change_mid_link,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_keep_on_disconnect, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lock_on_disconnect,
						setup_lock, teardown),
		cmocka_unit_test_setup_teardown(test_frames_that_move_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_dependency_table, setup,
						teardown),
		cmocka_unit_test(test_host_dispatch_order_and_copies),
		cmocka_unit_test(test_host_queue_bounds),
		cmocka_unit_test(test_host_destroy_drops_queue),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
