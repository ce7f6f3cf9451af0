/*
 * test_log: key=value log lines (libcommon/log.c).
 *
 * log_quote is checked case by case; whole lines are captured by pointing
 * stderr at a pipe for the duration of one call, then matched against the
 * format log.h promises.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define LINE_RE                                                                \
	"^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"            \
	"\\.[0-9]{3}Z level=(error|warn|info|debug) prog=[^ ]+ msg="

/* What one log call wrote to stderr ("" when nothing), in out. */
#define CAPTURE(out, call)                                                     \
	do {                                                                   \
		int fds_[2], saved_ = dup(STDERR_FILENO);                      \
		ssize_t n_;                                                    \
		assert_int_equal(pipe(fds_), 0);                               \
		dup2(fds_[1], STDERR_FILENO);                                  \
		call;                                                          \
		dup2(saved_, STDERR_FILENO);                                   \
		close(saved_);                                                 \
		close(fds_[1]);                                                \
		n_ = read(fds_[0], (out), sizeof(out) - 1);                    \
		(out)[n_ > 0 ? n_ : 0] = '\0';                                 \
		close(fds_[0]);                                                \
	} while (0)

static bool matches(const char *text, const char *pattern)
{
	regex_t re;
	bool ok;

	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	ok = regexec(&re, text, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

static void test_quote(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "plain", "plain" },
		{ "10.0.0.5:8080", "10.0.0.5:8080" },
		{ "a/b-c_d.e@f", "a/b-c_d.e@f" },
		{ "", "\"\"" },
		{ "two words", "\"two words\"" },
		{ "say \"hi\"", "\"say \\\"hi\\\"\"" },
		{ "back\\slash", "\"back\\\\slash\"" },
		{ "k=v", "\"k=v\"" },
		{ "line\nbreak\r\ttab", "\"line\\nbreak\\r\\ttab\"" },
		{ "bell\x07"
		  "del\x7f",
		  "\"bell\\x07del\\x7f\"" },
		{ "caf\xc3\xa9", "\"caf\xc3\xa9\"" },      /* UTF-8 kept */
		{ "bad\xff\xc3", "\"bad\\xff\\xc3\"" },    /* stray bytes */
		{ "\xed\xa0\x80", "\"\\xed\\xa0\\x80\"" }, /* surrogate */
	};
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = log_quote(buf, sizeof(buf), cases[i].in);

		assert_ptr_equal(got, buf);
		assert_string_equal(got, cases[i].out);
	}
	assert_string_equal(log_quote(buf, sizeof(buf), NULL), "(null)");
}

static void test_quote_truncates(void **state)
{
	char buf[12], tiny[4];
	char big[300];

	(void)state;
	/* A plain token too long to fit is cut and quoted. */
	assert_string_equal(log_quote(buf, sizeof(buf), "abcdefghijklmnop"),
			    "\"abcdef...\"");
	assert_string_equal(log_quote(buf, sizeof(buf), "abcdefghijk"),
			    "abcdefghijk");
	/* Exactly fits once quoted: no ellipsis. */
	assert_string_equal(log_quote(buf, sizeof(buf), "a b c d e"),
			    "\"a b c d e\"");
	assert_string_equal(log_quote(buf, sizeof(buf), "a b c d e f"),
			    "\"a b c ...\"");
	/* An escape is never cut in half. */
	assert_string_equal(log_quote(buf, sizeof(buf), "abcde\x01xyzxyz"),
			    "\"abcde...\"");
	/* Nor is a UTF-8 sequence. */
	assert_string_equal(log_quote(buf, sizeof(buf),
				      "abcde\xe2\x82\xac zzz"),
			    "\"abcde...\"");
	assert_string_equal(log_quote(tiny, sizeof(tiny), "a b"), "\"..");
	assert_string_equal(log_quote(tiny, 1, "a b"), "");
	assert_string_equal(log_quote(tiny, 0, "a b"), "");

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[5] = ' ';
	assert_int_equal(strlen(log_quote(buf, sizeof(buf), big)), 11);
}

/* Undo log.c's escapes: the bytes a quoted value stands for. */
static size_t unquote(const char *q, unsigned char *out)
{
	size_t n = 0, len = strlen(q);

	assert_true(len >= 2 && q[0] == '"' && q[len - 1] == '"');
	for (size_t i = 1; i < len - 1; i++) {
		if (q[i] != '\\') {
			out[n++] = (unsigned char)q[i];
			continue;
		}
		switch (q[++i]) {
		case 'n': out[n++] = '\n'; break;
		case 'r': out[n++] = '\r'; break;
		case 't': out[n++] = '\t'; break;
		case 'x': {
			unsigned v;

			assert_int_equal(sscanf(q + i + 1, "%2x", &v), 1);
			out[n++] = (unsigned char)v;
			i += 2;
			break;
		}
		default: out[n++] = (unsigned char)q[i]; break;
		}
	}
	return n;
}

static void test_quote_bytes(void **state)
{
	static const char data[] = "a\0b\"c\xe2\x82\xac\xff";
	char buf[64], tiny[8];
	unsigned char back[64];
	size_t used;

	(void)state;
	/* Every byte, NUL included; always quoted, even a plain token. */
	assert_string_equal(log_quote_bytes(buf, sizeof(buf), data,
					    sizeof(data) - 1, &used),
			    "\"a\\x00b\\\"c\xe2\x82\xac\\xff\"");
	assert_int_equal(used, sizeof(data) - 1);
	assert_int_equal(unquote(buf, back), sizeof(data) - 1);
	assert_memory_equal(back, data, sizeof(data) - 1);
	assert_string_equal(log_quote_bytes(buf, sizeof(buf), "ok", 2, &used),
			    "\"ok\"");
	assert_string_equal(log_quote_bytes(buf, sizeof(buf), "", 0, &used),
			    "\"\"");
	assert_int_equal(used, 0);
	/* A prefix, cut between characters, never inside one: no ellipsis. */
	assert_string_equal(log_quote_bytes(tiny, sizeof(tiny), "abcdefgh", 8,
					    &used),
			    "\"abcde\"");
	assert_int_equal(used, 5);
	assert_string_equal(log_quote_bytes(tiny, sizeof(tiny),
					    "abc\xe2\x82\xac", 6, &used),
			    "\"abc\"");
	assert_int_equal(used, 3);
	assert_string_equal(log_quote_bytes(tiny, sizeof(tiny),
					    "ab\xe2\x82\xac", 5, &used),
			    "\"ab\xe2\x82\xac\""); /* exactly fits */
	assert_string_equal(log_quote_bytes(tiny, sizeof(tiny), "abcd\x01", 5,
					    &used),
			    "\"abcd\"");
	assert_int_equal(used, 4);
	/* A UTF-8 sequence cut by the end of the data is stray bytes. */
	assert_string_equal(log_quote_bytes(buf, sizeof(buf), "\xe2\x82", 2,
					    &used),
			    "\"\\xe2\\x82\"");
	assert_string_equal(log_quote_bytes(tiny, 2, "a", 1, &used), "");
	assert_int_equal(used, 0);
}

/* A long value over several lines: none cut, the parts give it back. */
static void test_parts(void **state)
{
	static unsigned char data[4096], back[4096];
	static char out[65536];
	size_t parts, n = 0, lines = 0;
	char *line, *save = NULL;

	(void)state;
	log_init("t", LOG_INFO);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7);
	parts = log_parts_count(data, sizeof(data));
	assert_true(parts > 4); /* mostly \xNN: about 12 KiB quoted */
	assert_int_equal(log_parts_count(data, 0), 0);
	assert_int_equal(log_parts_count("short", 5), 1);
	CAPTURE(out, log_parts(LOG_INFO, "hook_output", "run=7", "output", data,
			       sizeof(data)));
	for (line = strtok_r(out, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char want[64];
		const char *value;

		lines++;
		assert_true(strlen(line) + 1 < 2048); /* never cut */
		assert_true(matches(line, LINE_RE "hook_output run=7 part="));
		snprintf(want, sizeof(want), "part=%zu/%zu output=", lines,
			 parts);
		value = strstr(line, want);
		assert_non_null(value);
		n += unquote(value + strlen(want), back + n);
	}
	assert_int_equal(lines, parts);
	assert_int_equal(n, sizeof(data));
	assert_memory_equal(back, data, sizeof(data));
	/* Below the level: nothing. */
	CAPTURE(out, log_parts(LOG_DEBUG, "x", "", "v", data, 10));
	assert_string_equal(out, "");
}

static void test_levels(void **state)
{
	(void)state;
	assert_int_equal(log_level_parse("error"), LOG_ERROR);
	assert_int_equal(log_level_parse("warn"), LOG_WARN);
	assert_int_equal(log_level_parse("info"), LOG_INFO);
	assert_int_equal(log_level_parse("debug"), LOG_DEBUG);
	assert_int_equal(log_level_parse("warning"), -1);
	assert_int_equal(log_level_parse("INFO"), -1);
	assert_int_equal(log_level_parse(""), -1);
	assert_int_equal(log_level_parse(NULL), -1);
	for (int l = LOG_ERROR; l <= LOG_DEBUG; l++)
		assert_int_equal(log_level_parse(log_level_name(l)), l);
	assert_string_equal(log_level_name((enum log_level)7), "unknown");

	log_set_level(LOG_DEBUG);
	assert_int_equal(log_get_level(), LOG_DEBUG);
	log_set_level(LOG_WARN);
	assert_int_equal(log_get_level(), LOG_WARN);
}

static void test_line_format(void **state)
{
	char out[4096];

	(void)state;
	log_init("test-prog", LOG_INFO);
	CAPTURE(out,
		log_info("listening", "addr=%s port=%d", "127.0.0.1", 5917));
	assert_true(matches(out, LINE_RE "listening addr=127\\.0\\.0\\.1 "
					 "port=5917\n$"));
	assert_non_null(strstr(out, "level=info prog=test-prog msg=listening"));

	CAPTURE(out, log_error("bind failed", NULL));
	assert_true(matches(out, LINE_RE "\"bind failed\"\n$"));
	assert_non_null(strstr(out, "level=error"));

	CAPTURE(out, log_warn("odd", "%s", ""));
	assert_true(matches(out, LINE_RE "odd\n$"));

	/* A raw newline from a careless caller cannot split the line. */
	CAPTURE(out, log_info("x", "v=%s", "a\nb"));
	assert_true(matches(out, LINE_RE "x v=a b\n$"));
}

/* Lines from other libraries' loggers: trailing newlines go, text is quoted. */
static void test_foreign_text(void **state)
{
	char out[4096];

	(void)state;
	log_init("test-prog", LOG_INFO);
	CAPTURE(out, log_text(LOG_WARN, "lws", "bind failed: in use\n"));
	assert_true(
		matches(out, LINE_RE "lws text=\"bind failed: in use\"\n$"));
	CAPTURE(out, log_text(LOG_DEBUG, "lws", "hidden"));
	assert_string_equal(out, "");
}

static void test_agent_line(void **state)
{
	char out[4096];

	(void)state;
	log_init("test-prog", LOG_INFO);
	CAPTURE(out, log_agent_line(LOG_INFO, "linked url=ws://x/ node=n"));
	assert_true(matches(out, LINE_RE "linked url=ws://x/ node=n\n$"));
	CAPTURE(out, log_agent_line(LOG_WARN, "alone"));
	assert_true(matches(out, LINE_RE "alone\n$"));
}

static void test_filtering(void **state)
{
	char out[4096];

	(void)state;
	log_init("t", LOG_INFO);
	CAPTURE(out, log_debug("hidden", "k=%d", 1));
	assert_string_equal(out, "");
	log_set_level(LOG_DEBUG);
	CAPTURE(out, log_debug("shown", "k=%d", 1));
	assert_true(matches(out, LINE_RE "shown k=1\n$"));
	log_set_level(LOG_ERROR);
	CAPTURE(out, log_warn("hidden", NULL));
	assert_string_equal(out, "");
	CAPTURE(out, log_error("shown", NULL));
	assert_true(matches(out, "level=error"));
	log_set_level(LOG_INFO);
}

static void test_long_line(void **state)
{
	static char value[5000];
	char out[8192];

	(void)state;
	log_init("t", LOG_INFO);
	memset(value, 'v', sizeof(value) - 1);
	CAPTURE(out, log_info("long", "k=%s", value));
	assert_int_equal(strlen(out), 2048);
	assert_true(matches(out, LINE_RE "long k=v+\\.\\.\\.\n$"));
}

static void test_errno_kept(void **state)
{
	char out[4096];

	(void)state;
	log_init("t", LOG_INFO);
	errno = 42;
	CAPTURE(out, log_info("kept", NULL));
	assert_int_equal(errno, 42);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_quote_truncates),
		cmocka_unit_test(test_quote_bytes),
		cmocka_unit_test(test_parts),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_line_format),
		cmocka_unit_test(test_foreign_text),
		cmocka_unit_test(test_agent_line),
		cmocka_unit_test(test_filtering),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_errno_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
