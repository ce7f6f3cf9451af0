/*
 * test_proto: the agent link's wire messages (libcommon/proto.c).
 *
 * Every message type goes through encode -> decode -> encode and is compared
 * with the shape docs/protocol.md shows; every validation rule is broken once
 * and must give its code and a reason naming the field. Frames are decoded from
 * exact-size heap copies with no NUL after them, so ASan and valgrind catch any
 * read past the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_check.h"

/* ---- round trips ------------------------------------------------------ */

static void test_hello_round_trip(void **state)
{
	struct proto_msg msg;
	const struct proto_hello *h = &msg.u.hello;

	(void)state;
	round_trip("{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"web-"
		   "1\","
		   "\"address\":\"10.0.0.5:8080\",\"depends_on\":[\"cache\","
		   "\"api\"],"
		   "\"meta\":{\"zone\":\"eu-1\",\"w\":[1,2.5,null]},"
		   "\"resume\":{\"epoch\":\"e1\",\"seq\":41}}",
		   &msg);
	assert_int_equal(msg.type, PROTO_HELLO);
	assert_string_equal(h->service, "web");
	assert_string_equal(h->instance, "web-1");
	assert_string_equal(h->address, "10.0.0.5:8080");
	assert_int_equal(h->n_depends, 2);
	assert_string_equal(h->depends_on[0], "cache");
	assert_string_equal(h->depends_on[1], "api");
	assert_true(cJSON_IsObject(h->meta));
	assert_string_equal(cJSON_GetObjectItem(h->meta, "zone")->valuestring,
			    "eu-1");
	assert_true(h->has_resume);
	assert_string_equal(h->resume_epoch, "e1");
	assert_int_equal(h->resume_seq, 41);
	proto_msg_release(&msg);
	assert_null(msg.u.hello.meta);
}

static void test_hello_minimal(void **state)
{
	struct proto_msg msg;
	char err[ERR_SIZE];

	(void)state;
	round_trip("{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"w\","
		   "\"depends_on\":[]}",
		   &msg);
	assert_string_equal(msg.u.hello.address, "");
	assert_int_equal(msg.u.hello.n_depends, 0);
	assert_null(msg.u.hello.meta);
	assert_false(msg.u.hello.has_resume);
	proto_msg_release(&msg);

	/* Optional fields may be null; unknown fields are ignored. */
	assert_int_equal(decode("{\"type\":\"hello\",\"service\":\"web\","
				"\"instance\":\"w\",\"address\":null,"
				"\"depends_on\":null,\"meta\":null,\"resume\":"
				"null,"
				"\"future\":{\"x\":[1,{\"y\":true}]}}",
				&msg, err),
			 PROTO_OK);
	assert_null(msg.u.hello.meta);
	assert_false(msg.u.hello.has_resume);
	proto_msg_release(&msg);
}

static void test_hello_limits_accepted(void **state)
{
	struct proto_msg msg;

	(void)state;
	round_trip("{\"type\":\"hello\",\"service\":\"" S63
		   "\",\"instance\":\"" S128 "\",\"address\":\"" ADDR259
		   "\",\"depends_on\":[\"a\","
		   "\"0.b_c-d\"],\"resume\":{\"epoch\":\"" S64 "\",\"seq\":0}}",
		   &msg);
	assert_int_equal(strlen(msg.u.hello.service), 63);
	assert_int_equal(strlen(msg.u.hello.instance), 128);
	assert_int_equal(strlen(msg.u.hello.address), 259);
	assert_int_equal(strlen(msg.u.hello.resume_epoch), 64);
	assert_int_equal(msg.u.hello.resume_seq, 0);
	proto_msg_release(&msg);
}

static void test_status_round_trip(void **state)
{
	struct proto_msg msg;

	(void)state;
	round_trip("{\"type\":\"status\",\"ready\":true}", &msg);
	assert_int_equal(msg.type, PROTO_STATUS);
	assert_true(msg.u.status.ready);
	assert_int_equal(msg.u.status.state, PROTO_STATE_READY);
	assert_false(msg.u.status.has_load);
	round_trip("{\"type\":\"status\",\"ready\":false}", &msg);
	assert_false(msg.u.status.ready);
	assert_int_equal(msg.u.status.state, PROTO_STATE_NOTREADY);
	proto_msg_release(&msg);
}

static void test_welcome_round_trip(void **state)
{
	struct proto_msg msg;
	const struct proto_welcome *w = &msg.u.welcome;

	(void)state;
	round_trip("{\"type\":\"welcome\",\"node\":\"node-a\",\"epoch\":\"e1\","
		   "\"seq\":57,\"recovered\":true,\"replay\":2,"
		   "\"services\":{\"cache\":true,\"api\":false}}",
		   &msg);
	assert_int_equal(msg.type, PROTO_WELCOME);
	assert_string_equal(w->node, "node-a");
	assert_string_equal(w->epoch, "e1");
	assert_int_equal(w->seq, 57);
	assert_true(w->recovered);
	assert_int_equal(w->replay, 2);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(w->services, "cache")));
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(w->services, "api")));
	proto_msg_release(&msg);

	/* Not recovered: no replay count goes out. */
	round_trip("{\"type\":\"welcome\",\"node\":\"n\",\"epoch\":\"e2\","
		   "\"seq\":0,\"recovered\":false,\"services\":{}}",
		   &msg);
	assert_false(msg.u.welcome.recovered);
	assert_int_equal(msg.u.welcome.replay, 0);
	proto_msg_release(&msg);
}

static void test_event_round_trip(void **state)
{
	static const char *const frames[] = {
		"{\"type\":\"event\",\"epoch\":\"e1\",\"seq\":58,\"kind\":"
		"\"readiness\","
		"\"command\":\"DataSend\",\"header\":{\"CacheReady\":1},"
		"\"value\":{\"service\":\"cache\",\"ready\":true}}",
		"{\"type\":\"event\",\"epoch\":\"e1\",\"seq\":59,\"kind\":"
		"\"invalidate\","
		"\"command\":\"DataSend\",\"header\":{\"CacheInvalidate\":true}"
		","
		"\"value\":{\"keys\":[\"SimpleCacheItem\"]}}",
		"{\"type\":\"event\",\"epoch\":\"e1\",\"seq\":60,\"kind\":"
		"\"command\","
		"\"command\":\"Flush\",\"header\":{},\"value\":7}",
		"{\"type\":\"event\",\"epoch\":\"e1\",\"seq\":61,\"kind\":"
		"\"command\","
		"\"command\":\"X\",\"header\":{\"a\":\"\\\"q\\\" \xc3\xa9\"},"
		"\"value\":[1,\"two\",null,false]}",
		"{\"type\":\"event\",\"epoch\":\"e1\",\"seq\":62,\"kind\":"
		"\"" S31 "\","
		"\"command\":\"" S63 "\",\"header\":{},\"value\":null}",
	};
	struct proto_msg msg;

	(void)state;
	for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
		round_trip(frames[i], &msg);
		assert_int_equal(msg.type, PROTO_EVENT);
		assert_int_equal(msg.u.event.seq, 58 + i);
		assert_non_null(msg.u.event.header);
		assert_non_null(msg.u.event.value);
		proto_msg_release(&msg);
	}
}

static void test_event_absent_parts(void **state)
{
	struct proto_msg msg;
	char err[ERR_SIZE];
	char *frame;
	size_t len;

	(void)state;
	assert_int_equal(decode("{\"type\":\"event\",\"epoch\":\"e\",\"seq\":1,"
				"\"kind\":\"command\",\"command\":\"C\"}",
				&msg, err),
			 PROTO_OK);
	assert_null(msg.u.event.header);
	assert_null(msg.u.event.value);
	/* NULL header goes out as {}, NULL value as null. */
	frame = proto_encode_event(&msg.u.event, 0, &len);
	assert_string_equal(frame,
			    "{\"type\":\"event\",\"epoch\":\"e\",\"seq\":1,"
			    "\"kind\":\"command\",\"command\":\"C\","
			    "\"header\":{},\"value\":null}");
	free(frame);
	proto_msg_release(&msg);

	assert_int_equal(decode("{\"type\":\"event\",\"epoch\":\"e\",\"seq\":1,"
				"\"kind\":\"k\",\"command\":\"C\",\"header\":"
				"null,"
				"\"value\":null}",
				&msg, err),
			 PROTO_OK);
	assert_null(msg.u.event.header);
	assert_true(cJSON_IsNull(msg.u.event.value));
	proto_msg_release(&msg);
}

/* The encoder borrows header and value: they stay intact and the caller's. */
static void test_event_encode_borrows(void **state)
{
	struct proto_event e;
	char *frame, *before, *after;
	size_t len;

	(void)state;
	memset(&e, 0, sizeof(e));
	strcpy(e.epoch, "e1");
	e.seq = 58;
	strcpy(e.kind, "readiness");
	strcpy(e.command, "DataSend");
	e.header = cJSON_Parse("{\"CacheReady\":1}");
	e.value = cJSON_Parse("{\"service\":\"cache\",\"ready\":true}");
	before = cJSON_PrintUnformatted(e.value);
	for (int i = 0; i < 2; i++) {
		frame = proto_encode_event(&e, 0, &len);
		assert_string_equal(
			frame,
			"{\"type\":\"event\",\"epoch\":\"e1\",\"seq\":58,"
			"\"kind\":\"readiness\",\"command\":\"DataSend\","
			"\"header\":{\"CacheReady\":1},"
			"\"value\":{\"service\":\"cache\",\"ready\":true}}");
		free(frame);
	}
	after = cJSON_PrintUnformatted(e.value);
	assert_string_equal(before, after);
	cJSON_free(before);
	cJSON_free(after);
	/* Scalar values are borrowed too. */
	cJSON_Delete(e.value);
	e.value = cJSON_CreateString("s");
	frame = proto_encode_event(&e, 0, &len);
	assert_non_null(strstr(frame, "\"value\":\"s\"}"));
	free(frame);
	cJSON_Delete(e.header);
	cJSON_Delete(e.value);
}

static void test_encode_from_structs(void **state)
{
	struct proto_hello h;
	struct proto_welcome w;
	char *frame;
	size_t len;

	(void)state;
	memset(&h, 0, sizeof(h));
	strcpy(h.service, "web");
	strcpy(h.instance, "web-1");
	frame = proto_encode_hello(&h, 0, &len);
	assert_string_equal(frame, "{\"type\":\"hello\",\"service\":\"web\","
				   "\"instance\":\"web-1\",\"depends_on\":[]}");
	free(frame);

	memset(&w, 0, sizeof(w));
	strcpy(w.node, "n");
	strcpy(w.epoch, "e");
	w.seq = 3;
	w.replay = 9; /* not recovered: not encoded */
	frame = proto_encode_welcome(&w, 0, &len);
	assert_string_equal(frame,
			    "{\"type\":\"welcome\",\"node\":\"n\","
			    "\"epoch\":\"e\",\"seq\":3,\"recovered\":false,"
			    "\"services\":{}}");
	free(frame);
}

/* ---- seqs ------------------------------------------------------------- */

static void test_big_seqs(void **state)
{
	struct proto_msg msg;
	char err[ERR_SIZE];

	(void)state;
	round_trip("{\"type\":\"event\",\"epoch\":\"e\",\"seq\":"
		   "18446744073709551615,"
		   "\"kind\":\"k\",\"command\":\"c\",\"header\":{},\"value\":"
		   "null}",
		   &msg);
	assert_true(msg.u.event.seq == UINT64_MAX);
	proto_msg_release(&msg);

	round_trip("{\"type\":\"welcome\",\"node\":\"n\",\"epoch\":\"e\","
		   "\"seq\":18446744073709551615,\"recovered\":true,"
		   "\"replay\":18446744073709551614,\"services\":{}}",
		   &msg);
	assert_true(msg.u.welcome.seq == UINT64_MAX);
	assert_true(msg.u.welcome.replay == UINT64_MAX - 1);
	proto_msg_release(&msg);

	/* 2^53 + 1 is the first integer a double cannot hold. */
	round_trip("{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"w\","
		   "\"depends_on\":[],\"resume\":{\"epoch\":\"e\","
		   "\"seq\":9007199254740993}}",
		   &msg);
	assert_true(msg.u.hello.resume_seq == 9007199254740993u);
	proto_msg_release(&msg);

	/* Numbers before the seq, in strings, keys and nested values, must
	 * not shift which token is read. */
	assert_int_equal(
		decode("{\"9\":[1,-2.5e3,{\"b\":1e5}],\"s\":\"7 8 -9\","
		       "\"type\":\"hello\",\"meta\":{\"n\":[0,12]},"
		       "\"service\":\"web\",\"instance\":\"w\","
		       "\"resume\":{\"x\":3,\"seq\":18446744073709551615,"
		       "\"epoch\":\"e\"}}",
		       &msg, err),
		PROTO_OK);
	assert_true(msg.u.hello.resume_seq == UINT64_MAX);
	proto_msg_release(&msg);

	/* A repeated key: the first one counts, as in every other field. */
	assert_int_equal(decode("{\"type\":\"event\",\"seq\":5,\"epoch\":\"e\","
				"\"kind\":\"k\",\"command\":\"c\","
				"\"seq\":18446744073709551615}",
				&msg, err),
			 PROTO_OK);
	assert_int_equal(msg.u.event.seq, 5);
	proto_msg_release(&msg);
}

/* ---- invalid messages -------------------------------------------------- */

#define WELCOME_WITH(extra)                                                    \
	"{\"type\":\"welcome\",\"node\":\"n\",\"epoch\":\"e\",\"seq\":"        \
	"1," extra "}"
#define EVENT_WITH(extra)                                                      \
	"{\"type\":\"event\",\"epoch\":\"e\",\"seq\":1," extra "}"
#define NAME_RULE "match [a-z0-9][a-z0-9_.-]{0,62}"

static const struct bad_frame bad_frames[] = {
	/* not JSON */
	{ "", PROTO_E_JSON, "not valid JSON" },
	{ " \n ", PROTO_E_JSON, "not valid JSON" },
	{ "{nope", PROTO_E_JSON, "not valid JSON" },
	{ "{\"type\":\"status\",\"ready\":true", PROTO_E_JSON,
	  "not valid JSON" },
	{ "{\"type\":\"status\",\"ready\":tru}", PROTO_E_JSON,
	  "not valid JSON" },
	{ "{\"type\":\"status\",\"ready\":true} x", PROTO_E_JSON, "after" },
	{ "{\"type\":\"status\",\"ready\":true}{}", PROTO_E_JSON, "after" },
	{ "{\"type\":\"status\",\x01\"ready\":true}", PROTO_E_JSON, "control" },
	{ "{\"type\":\"status\",\"ready\":true}\x1b", PROTO_E_JSON, "control" },
	/* not a message */
	{ "[]", PROTO_E_INVALID, "JSON object" },
	{ "\"just a string\"", PROTO_E_INVALID, "JSON object" },
	{ "42", PROTO_E_INVALID, "JSON object" },
	{ "null", PROTO_E_INVALID, "JSON object" },
	{ "{}", PROTO_E_INVALID, "'type' must be a string" },
	{ "{\"type\":1}", PROTO_E_INVALID, "'type' must be a string" },
	{ "{\"TYPE\":\"status\",\"ready\":true}", PROTO_E_INVALID, "'type'" },
	{ "{\"type\":\"bye\"}", PROTO_E_INVALID, "unknown message type" },
	{ "{\"type\":\"Status\",\"ready\":true}", PROTO_E_INVALID, "unknown" },
	/* hello */
	{ "{\"type\":\"hello\",\"instance\":\"w\"}", PROTO_E_INVALID,
	  "hello: 'service' is required" },
	{ "{\"type\":\"hello\",\"service\":1,\"instance\":\"w\"}",
	  PROTO_E_INVALID, "hello: 'service' must be a string" },
	{ "{\"type\":\"hello\",\"service\":null,\"instance\":\"w\"}",
	  PROTO_E_INVALID, "hello: 'service' must be a string" },
	{ "{\"type\":\"hello\",\"service\":\"Bad Name\",\"instance\":\"w\"}",
	  PROTO_E_INVALID, "hello: 'service' must " NAME_RULE },
	{ "{\"type\":\"hello\",\"service\":\"\",\"instance\":\"w\"}",
	  PROTO_E_INVALID, "'service' must " NAME_RULE },
	{ "{\"type\":\"hello\",\"service\":\"-web\",\"instance\":\"w\"}",
	  PROTO_E_INVALID, "'service' must " NAME_RULE },
	{ "{\"type\":\"hello\",\"service\":\"web/x\",\"instance\":\"w\"}",
	  PROTO_E_INVALID, "'service' must " NAME_RULE },
	{ "{\"type\":\"hello\",\"service\":\"" S64 "\",\"instance\":\"w\"}",
	  PROTO_E_INVALID, "'service' must " NAME_RULE },
	{ "{\"type\":\"hello\",\"service\":\"web\"}", PROTO_E_INVALID,
	  "hello: 'instance' is required" },
	{ "{\"type\":\"hello\",\"service\":\"web\",\"instance\":[]}",
	  PROTO_E_INVALID, "'instance' must be a string" },
	{ "{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"\"}",
	  PROTO_E_INVALID, "'instance' must be 1-128 printable" },
	{ "{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"a b\"}",
	  PROTO_E_INVALID, "'instance' must be 1-128 printable" },
	{ "{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"a\\tb\"}",
	  PROTO_E_INVALID, "'instance' must be 1-128 printable" },
	{ "{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"\xc3\xa9\"}",
	  PROTO_E_INVALID, "'instance' must be 1-128 printable" },
	{ "{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"" S129 "\"}",
	  PROTO_E_INVALID, "'instance' must be 1-128 printable" },
	{ HELLO_WITH("\"address\":5"), PROTO_E_INVALID,
	  "hello: 'address' must be a string" },
	{ HELLO_WITH("\"address\":\"" ADDR259 "0\""), PROTO_E_INVALID,
	  "hello: 'address' must be at most 259 bytes" },
	{ HELLO_WITH("\"depends_on\":{}"), PROTO_E_INVALID,
	  "'depends_on' must be an array" },
	{ HELLO_WITH("\"depends_on\":\"cache\""), PROTO_E_INVALID,
	  "'depends_on' must be an array" },
	{ HELLO_WITH("\"depends_on\":[1]"), PROTO_E_INVALID,
	  "'depends_on' entries must " NAME_RULE },
	{ HELLO_WITH("\"depends_on\":[\"cache\",\"Bad\"]"), PROTO_E_INVALID,
	  "'depends_on' entries must " NAME_RULE },
	{ HELLO_WITH("\"depends_on\":[\"" S64 "\"]"), PROTO_E_INVALID,
	  "'depends_on' entries must " NAME_RULE },
	{ HELLO_WITH("\"depends_on\":[\"a\",\"b\",\"a\"]"), PROTO_E_INVALID,
	  "'depends_on' lists a service twice" },
	{ HELLO_WITH("\"meta\":[]"), PROTO_E_INVALID,
	  "'meta' must be an object" },
	{ HELLO_WITH("\"meta\":\"x\""), PROTO_E_INVALID,
	  "'meta' must be an object" },
	{ HELLO_WITH("\"resume\":41"), PROTO_E_INVALID,
	  "'resume' must be an object" },
	{ HELLO_WITH("\"resume\":{}"), PROTO_E_INVALID,
	  "hello: 'resume.epoch' is required" },
	{ HELLO_WITH("\"resume\":{\"epoch\":7,\"seq\":1}"), PROTO_E_INVALID,
	  "'resume.epoch' must be a string" },
	{ HELLO_WITH("\"resume\":{\"epoch\":\"" S64 "x\",\"seq\":1}"),
	  PROTO_E_INVALID, "'resume.epoch' must be at most 64 bytes" },
	{ HELLO_WITH("\"resume\":{\"epoch\":\"e\"}"), PROTO_E_INVALID,
	  "hello: 'resume.seq' is required" },
	{ HELLO_WITH("\"resume\":{\"epoch\":\"e\",\"seq\":-1}"),
	  PROTO_E_INVALID, "'resume.seq' must be an integer in [0, 2^64)" },
	{ HELLO_WITH("\"resume\":{\"epoch\":\"e\",\"seq\":1.5}"),
	  PROTO_E_INVALID, "'resume.seq' must be an integer" },
	{ HELLO_WITH("\"resume\":{\"epoch\":\"e\",\"seq\":1.0}"),
	  PROTO_E_INVALID, "'resume.seq' must be an integer" },
	{ HELLO_WITH("\"resume\":{\"epoch\":\"e\",\"seq\":1e3}"),
	  PROTO_E_INVALID, "'resume.seq' must be an integer" },
	{ HELLO_WITH("\"resume\":{\"epoch\":\"e\",\"seq\":-0}"),
	  PROTO_E_INVALID, "'resume.seq' must be an integer" },
	/* Not JSON at all (cJSON alone would read 41). */
	{ HELLO_WITH("\"resume\":{\"epoch\":\"e\",\"seq\":041}"), PROTO_E_JSON,
	  "a number that is not JSON" },
	{ HELLO_WITH("\"resume\":{\"epoch\":\"e\",\"seq\":\"41\"}"),
	  PROTO_E_INVALID, "'resume.seq' must be an integer" },
	{ HELLO_WITH(
		  "\"resume\":{\"epoch\":\"e\",\"seq\":18446744073709551616}"),
	  PROTO_E_INVALID, "'resume.seq' must be an integer in [0, 2^64)" },
	{ HELLO_WITH(
		  "\"resume\":{\"epoch\":\"e\",\"seq\":99999999999999999999}"),
	  PROTO_E_INVALID, "'resume.seq' must be an integer in [0, 2^64)" },
	/* status */
	{ "{\"type\":\"status\"}", PROTO_E_INVALID,
	  "status: 'ready' must be true or false" },
	{ "{\"type\":\"status\",\"ready\":\"true\"}", PROTO_E_INVALID,
	  "status: 'ready' must be true or false" },
	{ "{\"type\":\"status\",\"ready\":1}", PROTO_E_INVALID,
	  "status: 'ready' must be true or false" },
	{ "{\"type\":\"status\",\"ready\":null}", PROTO_E_INVALID,
	  "status: 'ready' must be true or false" },
	/* welcome */
	{ "{\"type\":\"welcome\"}", PROTO_E_INVALID,
	  "welcome: 'node' is required" },
	{ "{\"type\":\"welcome\",\"node\":\"" S129 "\"}", PROTO_E_INVALID,
	  "welcome: 'node' must be at most 128 bytes" },
	{ "{\"type\":\"welcome\",\"node\":\"n\"}", PROTO_E_INVALID,
	  "welcome: 'epoch' is required" },
	{ "{\"type\":\"welcome\",\"node\":\"n\",\"epoch\":\"e\"}",
	  PROTO_E_INVALID, "welcome: 'seq' is required" },
	{ WELCOME_WITH("\"services\":{}"), PROTO_E_INVALID,
	  "welcome: 'recovered' must be true or false" },
	{ WELCOME_WITH("\"recovered\":true,\"replay\":-2,\"services\":{}"),
	  PROTO_E_INVALID, "welcome: 'replay' must be an integer" },
	{ WELCOME_WITH("\"recovered\":true"), PROTO_E_INVALID,
	  "welcome: 'services' must be an object" },
	{ WELCOME_WITH("\"recovered\":true,\"services\":[]"), PROTO_E_INVALID,
	  "welcome: 'services' must be an object" },
	{ WELCOME_WITH("\"recovered\":true,\"services\":{\"Bad\":true}"),
	  PROTO_E_INVALID, "welcome: 'services' must map" },
	{ WELCOME_WITH("\"recovered\":true,\"services\":{\"a\":1}"),
	  PROTO_E_INVALID, "welcome: 'services' must map" },
	/* event */
	{ "{\"type\":\"event\",\"seq\":1,\"kind\":\"k\",\"command\":\"c\"}",
	  PROTO_E_INVALID, "event: 'epoch' is required" },
	{ "{\"type\":\"event\",\"epoch\":\"e\",\"kind\":\"k\",\"command\":"
	  "\"c\"}",
	  PROTO_E_INVALID, "event: 'seq' is required" },
	{ EVENT_WITH("\"command\":\"c\""), PROTO_E_INVALID,
	  "event: 'kind' is required" },
	{ EVENT_WITH("\"kind\":\"" S32 "\",\"command\":\"c\""), PROTO_E_INVALID,
	  "event: 'kind' must be at most 31 bytes" },
	{ EVENT_WITH("\"kind\":\"k\""), PROTO_E_INVALID,
	  "event: 'command' is required" },
	{ EVENT_WITH("\"kind\":\"k\",\"command\":5"), PROTO_E_INVALID,
	  "event: 'command' must be a string" },
	{ EVENT_WITH("\"kind\":\"k\",\"command\":\"" S64 "\""), PROTO_E_INVALID,
	  "event: 'command' must be at most 63 bytes" },
	{ EVENT_WITH("\"kind\":\"k\",\"command\":\"c\",\"header\":[]"),
	  PROTO_E_INVALID, "event: 'header' must be an object" },
	{ EVENT_WITH("\"kind\":\"k\",\"command\":\"c\",\"header\":1"),
	  PROTO_E_INVALID, "event: 'header' must be an object" },
	{ "{\"type\":\"event\",\"epoch\":\"e\",\"seq\":2.5,\"kind\":\"k\","
	  "\"command\":\"c\"}",
	  PROTO_E_INVALID, "event: 'seq' must be an integer" },
};

static void test_bad_frames(void **state)
{
	(void)state;
	check_bad_frames(bad_frames,
			 sizeof(bad_frames) / sizeof(bad_frames[0]));
}

static void test_depends_count(void **state)
{
	char frame[8192], err[ERR_SIZE];
	struct proto_msg msg;
	size_t n;

	(void)state;
	for (int count = 64; count <= 65; count++) {
		n = (size_t)snprintf(frame, sizeof(frame),
				     "{\"type\":\"hello\","
				     "\"service\":\"web\",\"instance\":\"w\","
				     "\"depends_on\":[");
		for (int i = 0; i < count; i++)
			n += (size_t)snprintf(frame + n, sizeof(frame) - n,
					      "%s\"s%d\"", i ? "," : "", i);
		snprintf(frame + n, sizeof(frame) - n, "]}");
		if (count == 64) {
			assert_int_equal(decode(frame, &msg, err), PROTO_OK);
			assert_int_equal(msg.u.hello.n_depends, 64);
			assert_string_equal(msg.u.hello.depends_on[63], "s63");
			proto_msg_release(&msg);
		} else {
			assert_int_equal(decode(frame, &msg, err),
					 PROTO_E_INVALID);
			assert_non_null(strstr(err, "more than 64 entries"));
		}
	}
}

/* ---- gates before cJSON ------------------------------------------------- */

static void test_size_cap(void **state)
{
	const char *text = "{\"type\":\"status\",\"ready\":true}";
	size_t len = strlen(text);
	struct proto_msg msg;
	char err[ERR_SIZE];
	char *big;

	(void)state;
	assert_int_equal(decode_len(text, len, len, &msg, err), PROTO_OK);
	assert_int_equal(decode_len(text, len, len - 1, &msg, err),
			 PROTO_E_TOOBIG);
	assert_non_null(strstr(err, "over the"));
	assert_int_equal(proto_close_code(PROTO_E_TOOBIG), 1009);
	/* The cap comes first: even garbage over it is TOOBIG. */
	assert_int_equal(decode_len("\xff\xff\xff\xff", 4, 3, &msg, err),
			 PROTO_E_TOOBIG);

	/* max_len 0: no cap. */
	big = malloc(200000);
	assert_non_null(big);
	len = (size_t)sprintf(big, "{\"type\":\"hello\",\"service\":\"web\","
				   "\"instance\":\"w\",\"meta\":{\"x\":\"");
	memset(big + len, 'y', 150000);
	strcpy(big + len + 150000, "\"}}");
	assert_int_equal(decode_len(big, strlen(big), 0, &msg, err), PROTO_OK);
	proto_msg_release(&msg);
	assert_int_equal(decode_len(big, strlen(big), 65536, &msg, err),
			 PROTO_E_TOOBIG);
	free(big);
}

/* A hello whose nesting, root included, is depth. */
static char *nested_hello(int depth)
{
	char *frame = malloc(64 + 10 * (size_t)depth);
	size_t n;

	assert_non_null(frame);
	n = (size_t)sprintf(frame, "{\"type\":\"hello\",\"service\":\"a\","
				   "\"instance\":\"b\",\"meta\":");
	for (int i = 1; i < depth; i++)
		n += (size_t)sprintf(frame + n, "{\"x\":");
	n += (size_t)sprintf(frame + n, "1");
	for (int i = 0; i < depth; i++)
		frame[n++] = '}';
	frame[n] = '\0';
	return frame;
}

static void test_depth_limit(void **state)
{
	struct proto_msg msg;
	char err[ERR_SIZE];
	char *frame;

	(void)state;
	frame = nested_hello(PROTO_DEPTH_MAX);
	assert_int_equal(proto_json_depth(frame, strlen(frame), 100),
			 PROTO_DEPTH_MAX);
	assert_int_equal(decode(frame, &msg, err), PROTO_OK);
	proto_msg_release(&msg);
	free(frame);

	frame = nested_hello(PROTO_DEPTH_MAX + 1);
	assert_int_equal(decode(frame, &msg, err), PROTO_E_JSON);
	assert_non_null(strstr(err, "nested too deep"));
	free(frame);
}

static void test_json_depth(void **state)
{
	static const struct {
		const char *text;
		int depth;
	} cases[] = {
		{ "", 0 },
		{ "42", 0 },
		{ "{}", 1 },
		{ "[[]]", 2 },
		{ "[{},{},[]]", 2 },
		{ "\"[[[\"", 0 },
		{ "{\"a\\\"[\":[1]}", 2 }, /* escaped quote in a key */
		{ "[\"\\\\\",[]]", 2 },    /* an escaped backslash ends */
		{ "[\"\\\\\\\"[\"]", 1 },  /* \\ then \" inside */
		{ "\"[[", 0 },             /* unterminated string */
		{ "]]]{", 1 },             /* unbalanced */
		{ "\"\\", 0 },             /* escape at the very end */
	};
	char *deep;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (proto_json_depth(cases[i].text, strlen(cases[i].text),
				     100) != cases[i].depth)
			fail_msg("%s: want %d", cases[i].text, cases[i].depth);

	/* A hostile frame: a megabyte of '[' stops at limit + 1. */
	deep = malloc(1 << 20);
	assert_non_null(deep);
	memset(deep, '[', 1 << 20);
	assert_int_equal(proto_json_depth(deep, 1 << 20, 16), 17);
	assert_true(proto_json_depth(deep, 1 << 20, 16) > PROTO_DEPTH_MAX);
	free(deep);
}

static void test_text_checks(void **state)
{
	static const char *const bad_utf8[] = {
		"\xc0\x80",         /* overlong NUL */
		"\xc1\xbf",         /* overlong */
		"\xe0\x80\x80",     /* overlong */
		"\xed\xa0\x80",     /* surrogate */
		"\xf4\x90\x80\x80", /* past U+10FFFF */
		"\xf5\x80\x80\x80",
		"\xff",
		"\x80", /* lone continuation */
		"\xc3", /* cut short by the quote */
		"\xe2\x82",
		"\xf0\x9f\x98",
	};
	static const char *const good_utf8[] = {
		"\xc3\xa9",         "\xe2\x82\xac", "\xf0\x9f\x98\x80",
		"\xf4\x8f\xbf\xbf", "\xed\x9f\xbf", "\x7f",
	};
	struct proto_msg msg;
	char frame[256], err[ERR_SIZE];

	(void)state;
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
		snprintf(frame, sizeof(frame),
			 HELLO_WITH("\"meta\":{\"k\":\"%s\"}"), bad_utf8[i]);
		assert_int_equal(decode(frame, &msg, err), PROTO_E_JSON);
		assert_string_equal(err, "text is not valid UTF-8");
	}
	for (size_t i = 0; i < sizeof(good_utf8) / sizeof(good_utf8[0]); i++) {
		snprintf(frame, sizeof(frame),
			 HELLO_WITH("\"meta\":{\"k\":\"%s\"}"), good_utf8[i]);
		assert_int_equal(decode(frame, &msg, err), PROTO_OK);
		assert_string_equal(cJSON_GetObjectItem(msg.u.hello.meta, "k")
					    ->valuestring,
				    good_utf8[i]);
		proto_msg_release(&msg);
	}
	/* UTF-8 at the very end of the frame, cut short. */
	assert_int_equal(decode_len("{}\xe2\x82", 4, 0, &msg, err),
			 PROTO_E_JSON);
}

static void test_nul_bytes(void **state)
{
	static const char inside[] = "{\"type\":\"status\",\0\"ready\":true}";
	static const char after[] = "{\"type\":\"status\",\"ready\":true}\0";
	static const char in_string[] =
		"{\"type\":\"hello\",\"service\":\"web\0x\","
		"\"instance\":\"w\"}";
	struct proto_msg msg;
	char err[ERR_SIZE];

	(void)state;
	assert_int_equal(decode_len(inside, sizeof(inside) - 1, 0, &msg, err),
			 PROTO_E_JSON);
	assert_string_equal(err, "NUL byte in the text");
	assert_int_equal(decode_len(after, sizeof(after) - 1, 0, &msg, err),
			 PROTO_E_JSON);
	assert_int_equal(decode_len(in_string, sizeof(in_string) - 1, 0, &msg,
				    err),
			 PROTO_E_JSON);
	/* \u0000 would cut the name short inside cJSON: refused. */
	assert_int_equal(decode("{\"type\":\"hello\",\"service\":"
				"\"web\\u0000x\","
				"\"instance\":\"w\"}",
				&msg, err),
			 PROTO_E_JSON);
	assert_non_null(strstr(err, "\\u0000"));
	/* An escaped backslash before u0000 is plain text. */
	assert_int_equal(decode(HELLO_WITH("\"meta\":{\"k\":\"\\\\u0000\"}"),
				&msg, err),
			 PROTO_OK);
	assert_string_equal(cJSON_GetObjectItem(msg.u.hello.meta, "k")
				    ->valuestring,
			    "\\u0000");
	proto_msg_release(&msg);
}

static void test_whitespace(void **state)
{
	struct proto_msg msg;
	char err[ERR_SIZE];

	(void)state;
	assert_int_equal(decode(" \t\r\n{ \"type\" : \"status\" , \"ready\" : "
				"true }\r\n\t ",
				&msg, err),
			 PROTO_OK);
	assert_true(msg.u.status.ready);
}

/* ---- reasons, headroom, helpers ---------------------------------------- */

static void test_reason_buffer(void **state)
{
	struct proto_msg msg;
	char small[8];
	int rc;

	(void)state;
	/* No reason wanted. */
	rc = proto_decode("{nope", 5, 0, &msg, NULL, 0);
	assert_int_equal(rc, PROTO_E_JSON);
	/* A short buffer gets a terminated prefix. */
	rc = proto_decode("{\"type\":\"status\"}", 17, 0, &msg, small,
			  sizeof(small));
	assert_int_equal(rc, PROTO_E_INVALID);
	assert_string_equal(small, "status:");
}

static void test_headroom(void **state)
{
	static const char status[] = "{\"type\":\"status\",\"ready\":false}";
	struct proto_event e;
	cJSON *json;
	char *frame;
	size_t len = 0;

	(void)state;
	frame = proto_encode_status(&(struct proto_status){ 0 }, 16, &len);
	assert_non_null(frame);
	assert_int_equal(len, sizeof(status) - 1);
	assert_memory_equal(frame + 16, status, sizeof(status)); /* with NUL */
	free(frame);

	memset(&e, 0, sizeof(e));
	strcpy(e.epoch, "e");
	strcpy(e.kind, "k");
	strcpy(e.command, "c");
	frame = proto_encode_event(&e, 1000, &len);
	assert_non_null(frame);
	assert_int_equal(len, strlen(frame + 1000));
	assert_true(frame[1000] == '{' && frame[1000 + len - 1] == '}');
	free(frame);

	json = cJSON_Parse("{\"a\": [1, 2]}");
	frame = proto_print(json, 0, &len);
	assert_string_equal(frame, "{\"a\":[1,2]}");
	assert_int_equal(len, 11);
	free(frame);
	frame = proto_print(json, 7, &len);
	assert_string_equal(frame + 7, "{\"a\":[1,2]}");
	free(frame);
	cJSON_Delete(json);

	/* Headroom that cannot be allocated fails cleanly. */
	assert_null(proto_encode_status(
		&(struct proto_status){ .state = PROTO_STATE_READY },
		SIZE_MAX - 4, &len));
}

static void test_valid_name(void **state)
{
	(void)state;
	assert_true(proto_valid_name("web"));
	assert_true(proto_valid_name("0"));
	assert_true(proto_valid_name("a.b_c-d"));
	assert_true(proto_valid_name(S63 ""));
	assert_false(proto_valid_name(S64 ""));
	assert_false(proto_valid_name(""));
	assert_false(proto_valid_name(NULL));
	assert_false(proto_valid_name("_a"));
	assert_false(proto_valid_name(".a"));
	assert_false(proto_valid_name("Web"));
	assert_false(proto_valid_name("we b"));
	assert_false(proto_valid_name("web\n"));

	assert_true(proto_valid_instance("w"));
	assert_true(proto_valid_instance("web-1@10.0.0.5:8080/x~"));
	assert_true(proto_valid_instance(S128 ""));
	assert_false(proto_valid_instance(S129 ""));
	assert_false(proto_valid_instance(""));
	assert_false(proto_valid_instance(NULL));
	assert_false(proto_valid_instance("a b"));
	assert_false(proto_valid_instance("a\x7f"));
	assert_false(proto_valid_instance("\xc3\xa9"));
}

static void test_close_codes(void **state)
{
	(void)state;
	assert_int_equal(proto_close_code(PROTO_E_TOOBIG), 1009);
	assert_int_equal(proto_close_code(PROTO_E_JSON), 1007);
	assert_int_equal(proto_close_code(PROTO_E_INVALID), 1007);
	assert_int_equal(proto_close_code(PROTO_E_NOMEM), 1011);
}

/* The drain hint: one format, written and read here, and lenient reads of
 * what a newer daemon may add. */
static void test_drain_hint(void **state)
{
	char reason[64];
	uint32_t spread = 7;

	(void)state;
	proto_drain_reason(reason, sizeof(reason), 1500);
	assert_string_equal(reason, "drain spread_ms=1500");
	assert_true(proto_drain_hint(reason, &spread));
	assert_int_equal(spread, 1500);
	assert_true(proto_drain_hint("drain", &spread));
	assert_int_equal(spread, 0);
	assert_true(proto_drain_hint("drain node=a spread_ms=20 x=y", &spread));
	assert_int_equal(spread, 20);
	assert_true(proto_drain_hint("drain spread_ms=99999999999999999999",
				     &spread));
	assert_int_equal(spread, PROTO_DRAIN_SPREAD_MAX);
	assert_false(proto_drain_hint("cluster history reset", &spread));
	assert_false(proto_drain_hint("draining", &spread));
	assert_false(proto_drain_hint("", &spread));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_round_trip),
		cmocka_unit_test(test_hello_minimal),
		cmocka_unit_test(test_hello_limits_accepted),
		cmocka_unit_test(test_status_round_trip),
		cmocka_unit_test(test_welcome_round_trip),
		cmocka_unit_test(test_event_round_trip),
		cmocka_unit_test(test_event_absent_parts),
		cmocka_unit_test(test_event_encode_borrows),
		cmocka_unit_test(test_encode_from_structs),
		cmocka_unit_test(test_big_seqs),
		cmocka_unit_test(test_bad_frames),
		cmocka_unit_test(test_depends_count),
		cmocka_unit_test(test_size_cap),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_json_depth),
		cmocka_unit_test(test_text_checks),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_whitespace),
		cmocka_unit_test(test_reason_buffer),
		cmocka_unit_test(test_headroom),
		cmocka_unit_test(test_valid_name),
		cmocka_unit_test(test_close_codes),
		cmocka_unit_test(test_drain_hint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
