/*
 * test_proto_endpoint: an instance as an endpoint (docs/protocol.md): the
 * hello's address (host:port, each kind of host), weight and tags; status
 * with a state and a load, and what each refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proto_check.h"

/* An endpoint: IPv6 and DNS hosts, weight and tags. */
static void test_hello_endpoint(void **state)
{
	struct proto_msg msg;
	char host[PROTO_HOST_MAX + 1];
	unsigned port;

	(void)state;
	round_trip("{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"w\","
		   "\"address\":\"[2001:db8::1]:443\",\"weight\":7,"
		   "\"tags\":[\"blue\",\"eu-1\"],\"depends_on\":[]}",
		   &msg);
	assert_int_equal(msg.u.hello.weight, 7);
	assert_int_equal(msg.u.hello.n_tags, 2);
	assert_string_equal(msg.u.hello.tags[1], "eu-1");
	proto_msg_release(&msg);
	/* The default weight is left out when encoding. */
	round_trip("{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"w\","
		   "\"address\":\"Web-1.example.COM:80\",\"depends_on\":[]}",
		   &msg);
	assert_int_equal(msg.u.hello.weight, PROTO_WEIGHT_DEFAULT);
	proto_msg_release(&msg);
	assert_int_equal(proto_split_address("[::1]:8080", host, sizeof(host),
					     &port),
			 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 8080);
	assert_int_equal(proto_split_address("10.1.2.3:1", host, sizeof(host),
					     &port),
			 0);
	assert_string_equal(host, "10.1.2.3");
	assert_int_equal(port, 1);
	assert_int_equal(proto_split_address("web:80", host, 3, &port), -1);
}

/* state and load, with ready or without. */
static void test_status_state(void **state)
{
	struct proto_msg msg;
	char err[ERR_SIZE];

	(void)state;
	round_trip("{\"type\":\"status\",\"ready\":false,\"state\":"
		   "\"draining\",\"load\":0.25}",
		   &msg);
	assert_false(msg.u.status.ready);
	assert_int_equal(msg.u.status.state, PROTO_STATE_DRAINING);
	assert_true(msg.u.status.has_load);
	assert_true(msg.u.status.load == 0.25);
	round_trip("{\"type\":\"status\",\"ready\":true,\"state\":"
		   "\"ready\",\"load\":1}",
		   &msg);
	assert_true(msg.u.status.ready);
	/* state alone: ready follows it. */
	assert_int_equal(decode("{\"type\":\"status\",\"state\":\"ready\"}",
				&msg, err),
			 PROTO_OK);
	assert_true(msg.u.status.ready);
	proto_msg_release(&msg);
}

static const struct bad_frame bad_frames[] = {
#define BAD_ADDRESS(a)                                                         \
	{                                                                      \
		HELLO_WITH("\"address\":\"" a "\""), PROTO_E_INVALID,          \
			"hello: 'address' must be host:port"                   \
	}
	BAD_ADDRESS("10.0.0.5"),
	BAD_ADDRESS("10.0.0.5:"),
	BAD_ADDRESS(":80"),
	BAD_ADDRESS("10.0.0.5:0"),
	BAD_ADDRESS("10.0.0.5:65536"),
	BAD_ADDRESS("10.0.0.5:080"),
	BAD_ADDRESS("10.0.0.5:+80"),
	BAD_ADDRESS("10.0.0.5:8080 "),
	BAD_ADDRESS("1.2.3:80"),
	BAD_ADDRESS("256.0.0.1:80"),
	BAD_ADDRESS("::1:80"),
	BAD_ADDRESS("[::1]"),
	BAD_ADDRESS("[]:80"),
	BAD_ADDRESS("[10.0.0.1]:80"),
	BAD_ADDRESS("[fe80::1%eth0]:80"),
	BAD_ADDRESS("-web.local:80"),
	BAD_ADDRESS("web-.local:80"),
	BAD_ADDRESS("web..local:80"),
	BAD_ADDRESS("web_1.local:80"),
	BAD_ADDRESS("http://web:80"),
	BAD_ADDRESS("0x7f.1:80"),
	BAD_ADDRESS("0x7f000001:80"),
	BAD_ADDRESS("2130706433:80"),
	BAD_ADDRESS("1.2.3.0x4:80"),
	BAD_ADDRESS("web.123:80"),
	BAD_ADDRESS(S63 "a.local:80"),
	BAD_ADDRESS(S63 "." S63 "." S63 "." S61 "b:80"),
#undef BAD_ADDRESS
	{ HELLO_WITH("\"weight\":0"), PROTO_E_INVALID,
	  "hello: 'weight' must be an integer from 1 to 1000" },
	{ HELLO_WITH("\"weight\":1001"), PROTO_E_INVALID,
	  "hello: 'weight' must be an integer from 1 to 1000" },
	{ HELLO_WITH("\"weight\":1.5"), PROTO_E_INVALID,
	  "hello: 'weight' must be an integer from 1 to 1000" },
	{ HELLO_WITH("\"weight\":-3"), PROTO_E_INVALID,
	  "hello: 'weight' must be an integer from 1 to 1000" },
	{ HELLO_WITH("\"weight\":1e300"), PROTO_E_INVALID,
	  "hello: 'weight' must be an integer from 1 to 1000" },
	{ HELLO_WITH("\"weight\":\"5\""), PROTO_E_INVALID,
	  "hello: 'weight' must be an integer from 1 to 1000" },
	{ HELLO_WITH("\"tags\":\"a\""), PROTO_E_INVALID,
	  "hello: 'tags' must be an array" },
	{ HELLO_WITH("\"tags\":[\"Blue\"]"), PROTO_E_INVALID,
	  "hello: 'tags' entries must match" },
	{ HELLO_WITH("\"tags\":[1]"), PROTO_E_INVALID,
	  "hello: 'tags' entries must match" },
	{ HELLO_WITH("\"tags\":[\"a\",\"a\"]"), PROTO_E_INVALID,
	  "hello: 'tags' lists a tag twice" },
	{ HELLO_WITH("\"tags\":[\"t0\",\"t1\",\"t2\",\"t3\",\"t4\",\"t5\","
		     "\"t6\",\"t7\",\"t8\",\"t9\",\"t10\",\"t11\",\"t12\","
		     "\"t13\",\"t14\",\"t15\",\"t16\",\"t17\",\"t18\","
		     "\"t19\",\"t20\",\"t21\",\"t22\",\"t23\",\"t24\","
		     "\"t25\",\"t26\",\"t27\",\"t28\",\"t29\",\"t30\","
		     "\"t31\",\"t32\"]"),
	  PROTO_E_INVALID, "hello: 'tags' has more than 32 entries" },
	{ "{\"type\":\"status\",\"state\":\"up\"}", PROTO_E_INVALID,
	  "status: 'state' must be ready, draining or notready" },
	{ "{\"type\":\"status\",\"state\":1}", PROTO_E_INVALID,
	  "status: 'state' must be a string" },
	{ "{\"type\":\"status\",\"ready\":true,\"state\":\"draining\"}",
	  PROTO_E_INVALID, "status: 'ready' and 'state' disagree" },
	{ "{\"type\":\"status\",\"ready\":true,\"load\":1.5}", PROTO_E_INVALID,
	  "status: 'load' must be a number from 0 to 1" },
	{ "{\"type\":\"status\",\"ready\":true,\"load\":-0.1}", PROTO_E_INVALID,
	  "status: 'load' must be a number from 0 to 1" },
	{ "{\"type\":\"status\",\"ready\":true,\"load\":\"0.5\"}",
	  PROTO_E_INVALID, "status: 'load' must be a number from 0 to 1" },
};

static void test_bad_frames(void **state)
{
	(void)state;
	check_bad_frames(bad_frames,
			 sizeof(bad_frames) / sizeof(bad_frames[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_endpoint),
		cmocka_unit_test(test_status_state),
		cmocka_unit_test(test_bad_frames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
