/*
 * test_proto_watch: watching endpoints (docs/protocol.md, "Endpoints"):
 * the hello's watch (true or a list), the welcome's sets, the endpoints
 * message in both forms, and every endpoint field an agent checks before
 * it picks from it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proto_check.h"

#define EP_AS(address, state, extra)                                           \
	"{\"instance\":\"a-1\",\"address\":\"" address "\",\"state\":\"" state \
	"\"" extra "}"
#define EP(extra) EP_AS("10.0.0.1:80", "ready", extra)
#define FULL(list)                                                             \
	"{\"type\":\"endpoints\",\"service\":\"api\",\"index\":7,"             \
	"\"endpoints\":[" list "]}"
#define DELTA(rest)                                                            \
	"{\"type\":\"endpoints\",\"service\":\"api\",\"index\":9" rest "}"

static void test_hello_watch(void **state)
{
	struct proto_msg msg;

	(void)state;
	round_trip("{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"w\","
		   "\"depends_on\":[\"api\"],\"watch\":true}",
		   &msg);
	assert_true(msg.u.hello.watch_deps);
	proto_msg_release(&msg);
	round_trip("{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"w\","
		   "\"depends_on\":[],\"watch\":[\"api\",\"db\"]}",
		   &msg);
	assert_false(msg.u.hello.watch_deps);
	assert_int_equal(msg.u.hello.n_watch, 2);
	assert_string_equal(msg.u.hello.watch[1], "db");
	proto_msg_release(&msg);
}

static void test_endpoints_messages(void **state)
{
	struct proto_msg msg;
	char err[ERR_SIZE];

	(void)state;
	assert_int_equal(
		decode(FULL(EP(",\"weight\":5,\"load\":0.5,\"tags\":"
			       "[\"blue\"],\"node\":\"n\"") "," EP("")),
		       &msg, err),
		PROTO_OK);
	assert_int_equal(msg.type, PROTO_ENDPOINTS);
	assert_true(msg.u.endpoints.full);
	assert_int_equal(msg.u.endpoints.index, 7);
	assert_int_equal(cJSON_GetArraySize(msg.u.endpoints.set), 2);
	assert_null(msg.u.endpoints.gone);
	proto_msg_release(&msg);
	assert_int_equal(decode(DELTA(",\"since\":7,\"set\":[" EP(
					"") "],"
					    "\"gone\":[\"a-2\"]"),
				&msg, err),
			 PROTO_OK);
	assert_false(msg.u.endpoints.full);
	assert_int_equal(msg.u.endpoints.since, 7);
	assert_string_equal(cJSON_GetArrayItem(msg.u.endpoints.gone, 0)
				    ->valuestring,
			    "a-2");
	proto_msg_release(&msg);
	/* A welcome with sets. */
	assert_int_equal(decode("{\"type\":\"welcome\",\"node\":\"n\","
				"\"epoch\":\"e\",\"seq\":1,\"recovered\":false,"
				"\"services\":{},\"endpoints\":{\"api\":{"
				"\"index\":3,\"endpoints\":[" EP("") "]}}}",
				&msg, err),
			 PROTO_OK);
	assert_non_null(msg.u.welcome.endpoints);
	proto_msg_release(&msg);
}

static const struct bad_frame bad_frames[] = {
	{ HELLO_WITH("\"watch\":\"api\""), PROTO_E_INVALID,
	  "hello: 'watch' must be an array" },
	{ HELLO_WITH("\"watch\":[\"Api\"]"), PROTO_E_INVALID,
	  "hello: 'watch' entries must match" },
	{ HELLO_WITH("\"watch\":[\"a\",\"a\"]"), PROTO_E_INVALID,
	  "hello: 'watch' lists a service twice" },
	{ HELLO_WITH(
		  "\"watch\":[\"s0\",\"s1\",\"s2\",\"s3\",\"s4\",\"s5\",\"s6\","
		  "\"s7\",\"s8\",\"s9\",\"s10\",\"s11\",\"s12\",\"s13\","
		  "\"s14\","
		  "\"s15\",\"s16\",\"s17\",\"s18\",\"s19\",\"s20\",\"s21\","
		  "\"s22\",\"s23\",\"s24\",\"s25\",\"s26\",\"s27\",\"s28\","
		  "\"s29\",\"s30\",\"s31\",\"s32\",\"s33\",\"s34\",\"s35\","
		  "\"s36\",\"s37\",\"s38\",\"s39\",\"s40\",\"s41\",\"s42\","
		  "\"s43\",\"s44\",\"s45\",\"s46\",\"s47\",\"s48\",\"s49\","
		  "\"s50\",\"s51\",\"s52\",\"s53\",\"s54\",\"s55\",\"s56\","
		  "\"s57\",\"s58\",\"s59\",\"s60\",\"s61\",\"s62\",\"s63\","
		  "\"s64\"]"),
	  PROTO_E_INVALID, "hello: 'watch' has more than 64 entries" },
	{ FULL("{\"address\":\"10.0.0.1:80\",\"state\":\"ready\"}"),
	  PROTO_E_INVALID, "instance is not valid" },
	{ FULL(EP_AS("10.0.0.1", "ready", "")), PROTO_E_INVALID,
	  "address must be host:port" },
	{ FULL(EP_AS("10.0.0.1:80", "up", "")), PROTO_E_INVALID,
	  "state must be ready" },
	{ FULL(EP(",\"weight\":0")), PROTO_E_INVALID,
	  "weight must be an integer" },
	{ FULL(EP(",\"weight\":1001")), PROTO_E_INVALID,
	  "weight must be an integer" },
	{ FULL(EP(",\"load\":1.5")), PROTO_E_INVALID, "load must be a number" },
	{ FULL(EP(",\"load\":\"0.5\"")), PROTO_E_INVALID,
	  "load must be a number" },
	{ FULL(EP(",\"tags\":[\"Bad\"]")), PROTO_E_INVALID,
	  "tags must be at most" },
	{ FULL(EP(",\"node\":1")), PROTO_E_INVALID, "node is not valid" },
	{ FULL("1"), PROTO_E_INVALID, "an endpoint must be an object" },
	{ "{\"type\":\"endpoints\",\"service\":\"api\",\"index\":7,"
	  "\"endpoints\":{}}",
	  PROTO_E_INVALID, "'endpoints' must be an array" },
	{ "{\"type\":\"endpoints\",\"service\":\"Api\",\"index\":7,"
	  "\"endpoints\":[]}",
	  PROTO_E_INVALID, "'service' must match" },
	{ "{\"type\":\"endpoints\",\"service\":\"api\",\"endpoints\":[]}",
	  PROTO_E_INVALID, "'index' is required" },
	{ DELTA(",\"set\":[],\"gone\":[]"), PROTO_E_INVALID,
	  "'since' is required" },
	{ DELTA(",\"since\":-1,\"set\":[],\"gone\":[]"), PROTO_E_INVALID,
	  "'since' must be an integer" },
	{ DELTA(",\"since\":1,\"gone\":[]"), PROTO_E_INVALID,
	  "'set' must be an array" },
	{ DELTA(",\"since\":1,\"set\":[]"), PROTO_E_INVALID,
	  "'gone' must be an array" },
	{ DELTA(",\"since\":1,\"set\":[],\"gone\":[\"a b\"]"), PROTO_E_INVALID,
	  "'gone' must list instance ids" },
	{ "{\"type\":\"welcome\",\"node\":\"n\",\"epoch\":\"e\",\"seq\":1,"
	  "\"recovered\":false,\"services\":{},\"endpoints\":[]}",
	  PROTO_E_INVALID, "'endpoints' must be an object" },
	{ "{\"type\":\"welcome\",\"node\":\"n\",\"epoch\":\"e\",\"seq\":1,"
	  "\"recovered\":false,\"services\":{},\"endpoints\":{\"api\":{"
	  "\"endpoints\":[]}}}",
	  PROTO_E_INVALID, "'endpoints.index' is required" },
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
		cmocka_unit_test(test_hello_watch),
		cmocka_unit_test(test_endpoints_messages),
		cmocka_unit_test(test_bad_frames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
