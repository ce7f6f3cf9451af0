/*
 * test_proto_numbers: numbers in JSON text (libcommon/proto.c): the strict
 * parse refuses what RFC 8259 does not call a number, proto_json_exact
 * keeps the text of every number a double would change, an event decoded
 * by libagent prints its header and value back byte for byte, and
 * proto_parse_u64 takes plain decimal digits only.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* Parse text strictly, keep its numbers, print it back. */
static char *exact_round_trip(const char *text)
{
	size_t len = strlen(text);
	char *copy = malloc(len), *out, err[128];
	cJSON *tree;

	assert_non_null(copy);
	memcpy(copy, text, len); /* no NUL after it */
	tree = proto_parse_json(copy, len, PROTO_DEPTH_MAX, err, sizeof(err));
	assert_non_null(tree);
	assert_int_equal(proto_json_exact(tree, copy, len), 0);
	free(copy);
	out = cJSON_PrintUnformatted(tree);
	cJSON_Delete(tree);
	return out;
}

static void test_exact_numbers(void **state)
{
	static const char *const texts[] = {
		"[9007199254740993,123456789012345678,18446744073709551616]",
		"[1.10,-0,1E+2,1e400,-1e-400,0.1,1.0000000000000001]",
		"{\"a\":{\"b\":[1,{\"c\":12345678901234567890123}],\"d\":2.50},"
		"\"e\":\"9007199254740993\",\"f\":-9007199254740993}",
		"{\"k1\":1,\"k1\":1.0}", /* duplicates kept in order */
		"[\"-1 2\\\" 3\",4.000,\"\\\\\",5.0]", /* digits inside strings
							*/
		"[[[[[[[[1.5e10]]]]]]]]",
		"7.0",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		char *out = exact_round_trip(texts[i]);

		assert_string_equal(out, texts[i]);
		free(out);
	}
}

/* Numbers a double prints back as written stay numbers: code reading them
 * is unaffected. */
static void test_plain_numbers_stay(void **state)
{
	const char text[] =
		"{\"a\":42,\"b\":-7,\"c\":0.5,\"d\":1.5,\"e\":1e+100,"
		"\"big\":9007199254740993}";
	char err[128];
	cJSON *tree =
		proto_parse_json(text, sizeof(text) - 1, 16, err, sizeof(err));

	(void)state;
	assert_non_null(tree);
	assert_int_equal(proto_json_exact(tree, text, sizeof(text) - 1), 0);
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(tree, "a")));
	assert_int_equal(cJSON_GetObjectItem(tree, "a")->valueint, 42);
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(tree, "b")));
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(tree, "c")));
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(tree, "d")));
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(tree, "e")));
	assert_true(cJSON_IsRaw(cJSON_GetObjectItem(tree, "big")));
	assert_string_equal(cJSON_GetObjectItem(tree, "big")->valuestring,
			    "9007199254740993");
	/* A duplicate of a raw node is raw, with its own copy of the text. */
	{
		cJSON *copy = cJSON_Duplicate(tree, 1);
		char *a = cJSON_PrintUnformatted(copy);

		cJSON_Delete(tree);
		assert_string_equal(a, text);
		free(a);
		cJSON_Delete(copy);
	}
}

static void test_number_grammar(void **state)
{
	static const char *const bad[] = {
		"[01]",  "[-01]", "[1.]",       "[1.e5]",  "[-]",
		"[1e]",  "[1e+]", "{\"a\":00}", "[0.5.1]", "[-.5]",
		"[1E-]", "[2-1]", "[1ee2]",     "[0x10]",  "[1.5e3.2]",
	};
	static const char *const good[] = {
		"[0]",
		"[-0]",
		"[0.0]",
		"[10]",
		"[1e5]",
		"[1E-5]",
		"[1.5e+3]",
		"[-0.0e0]",
		"[123456789012345678901234567890]",
		"[\"01\",\"1.\",\".5\"]",
	};
	char err[128];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *t = proto_parse_json(bad[i], strlen(bad[i]), 16, err,
					    sizeof(err));

		if (t)
			fail_msg("accepted %s", bad[i]);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cJSON *t = proto_parse_json(good[i], strlen(good[i]), 16, err,
					    sizeof(err));

		if (!t)
			fail_msg("refused %s: %s", good[i], err);
		cJSON_Delete(t);
	}
	assert_null(proto_parse_json("[01]", 4, 16, err, sizeof(err)));
	assert_non_null(strstr(err, "number"));
}

/* What libagent hands the app: header and value as the daemon sent them;
 * the seq is still read as a number. */
static void test_event_keeps_numbers(void **state)
{
	const char frame[] =
		"{\"type\":\"event\",\"epoch\":\"e1\",\"seq\":9007199254740993,"
		"\"kind\":\"command\",\"command\":\"X\","
		"\"header\":{\"n\":123456789012345678},"
		"\"value\":[9007199254740991,1.10,-0,1e400,7]}";
	struct proto_msg msg;
	char err[128], *h, *v;

	(void)state;
	assert_int_equal(proto_decode(frame, sizeof(frame) - 1, 0, &msg, err,
				      sizeof(err)),
			 PROTO_OK);
	assert_true(msg.u.event.seq == UINT64_C(9007199254740993));
	h = cJSON_PrintUnformatted(msg.u.event.header);
	v = cJSON_PrintUnformatted(msg.u.event.value);
	assert_string_equal(h, "{\"n\":123456789012345678}");
	assert_string_equal(v, "[9007199254740991,1.10,-0,1e400,7]");
	free(h);
	free(v);
	proto_msg_release(&msg);
}

static void test_exact_depth_bound(void **state)
{
	char text[200];
	size_t n = 0;
	cJSON *tree;

	(void)state;
	for (int i = 0; i < 70; i++)
		text[n++] = '[';
	text[n++] = '1';
	for (int i = 0; i < 70; i++)
		text[n++] = ']';
	tree = cJSON_ParseWithLength(text, n);
	assert_non_null(tree);
	assert_int_equal(proto_json_exact(tree, text, n), -1);
	cJSON_Delete(tree);
}

static void test_parse_u64(void **state)
{
	static const char *const bad[] = {
		"",
		" 1",
		"1 ",
		"-1",
		" -1",
		"+1",
		"01",
		"1.0",
		"1e3",
		"0x1",
		"18446744073709551616",
		"99999999999999999999",
		"1\n",
	};
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (proto_parse_u64(bad[i], strlen(bad[i]), &v))
			fail_msg("accepted \"%s\"", bad[i]);
	assert_true(proto_parse_u64("0", 1, &v) && v == 0);
	assert_true(proto_parse_u64("42", 2, &v) && v == 42);
	assert_true(proto_parse_u64("18446744073709551615", 20, &v) &&
		    v == UINT64_MAX);
	/* Only n bytes are read. */
	assert_true(proto_parse_u64("123x", 3, &v) && v == 123);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_numbers),
		cmocka_unit_test(test_plain_numbers_stay),
		cmocka_unit_test(test_number_grammar),
		cmocka_unit_test(test_event_keeps_numbers),
		cmocka_unit_test(test_exact_depth_bound),
		cmocka_unit_test(test_parse_u64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
