/*
 * test_agent_url: libagent's discoveryd URLs (agent/lib/url.c).
 *
 * What libwebsockets gets out of a URL (address, port, the Host header,
 * the request path) for every accepted shape, and a clear error, never a
 * half-filled struct that turns into a reconnect loop, for every rejected
 * one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../agent/lib/agent_int.h"

struct good {
	const char *text;
	const char *host;
	const char *host_header;
	const char *path;
	int port;
	bool tls;
};

static void test_accepted_shapes(void **state)
{
	static const struct good cases[] = {
		{ "ws://127.0.0.1:5917", "127.0.0.1", "127.0.0.1:5917", "/",
		  5917, false },
		{ "ws://127.0.0.1:5917/", "127.0.0.1", "127.0.0.1:5917", "/",
		  5917, false },
		{ "ws://example.com", "example.com", "example.com", "/", 80,
		  false },
		{ "ws://example.com:80/x", "example.com", "example.com", "/x",
		  80, false },
		{ "wss://example.com", "example.com", "example.com", "/", 443,
		  true },
		{ "wss://example.com:8443/agents", "example.com",
		  "example.com:8443", "/agents", 8443, true },
		{ "ws://d.example_1-a.internal/p/q", "d.example_1-a.internal",
		  "d.example_1-a.internal", "/p/q", 80, false },
		{ "ws://[::1]:5917/", "::1", "[::1]:5917", "/", 5917, false },
		{ "wss://[fe80::1%eth0]", "fe80::1%eth0", "[fe80::1%eth0]", "/",
		  443, true },
		/* A query without a path still makes a valid request line. */
		{ "ws://h?token=abc", "h", "h", "/?token=abc", 80, false },
		{ "ws://h:1/?token=a.b-c", "h", "h:1", "/?token=a.b-c", 1,
		  false },
		{ "ws://h:65535", "h", "h:65535", "/", 65535, false },
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct good *c = &cases[i];
		struct url u;

		err[0] = '\0';
		if (url_parse(c->text, &u, err, sizeof(err)) != 0)
			fail_msg("%s: %s", c->text, err);
		assert_string_equal(u.text, c->text);
		assert_string_equal(u.host, c->host);
		assert_string_equal(u.host_header, c->host_header);
		assert_string_equal(u.path, c->path);
		assert_int_equal(u.port, c->port);
		assert_int_equal(u.tls, c->tls);
	}
}

static void test_rejected_shapes(void **state)
{
	static const char *const cases[] = {
		"",
		"http://h/",
		"WS://h/",
		"ws:/h",
		"ws://",
		"ws:///path",
		"ws://:5917/",
		"ws://h:/",
		"ws://h:0/",
		"ws://h:65536/",
		"ws://h:123456/",
		"ws://h:12a/",
		"ws://h:-1/",
		"ws://user@h/",
		"ws://h h/",
		"ws://h\"/",
		"ws://[::1/",
		"ws://[]/",
		"ws://[::1]x/",
		"ws://::1/", /* IPv6 needs brackets */
		"ws://h/a b",
		"ws://h/a\"b",
		"ws://h/<script>",
		"ws://h/#frag",
		"ws://h/\x7f",
		"ws://h/\xc3\xa9", /* raw UTF-8 in the request line */
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct url u;

		err[0] = '\0';
		if (url_parse(cases[i], &u, err, sizeof(err)) == 0)
			fail_msg("accepted \"%s\"", cases[i]);
		/* The message names the URL so that a config error is findable.
		 */
		assert_true(strlen(err) > 0);
	}
}

static void test_length_limits(void **state)
{
	char text[AGENT_URL_MAX + 16], err[256];
	struct url u;
	size_t n;

	(void)state;
	/* The longest URL that fits, with a long path. */
	n = (size_t)snprintf(text, sizeof(text), "ws://h/");
	memset(text + n, 'p', AGENT_URL_MAX - 1 - n);
	text[AGENT_URL_MAX - 1] = '\0';
	assert_int_equal(url_parse(text, &u, err, sizeof(err)), 0);
	assert_int_equal(strlen(u.path), AGENT_URL_MAX - 1 - strlen("ws://h"));

	/* One byte more. */
	memset(text + n, 'p', AGENT_URL_MAX - n);
	text[AGENT_URL_MAX] = '\0';
	assert_int_equal(url_parse(text, &u, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "longer"));

	/* A 255-byte host fits the host buffer; 256 does not. */
	n = (size_t)snprintf(text, sizeof(text), "ws://");
	memset(text + n, 'a', 255);
	snprintf(text + n + 255, sizeof(text) - n - 255, ":1/");
	assert_int_equal(url_parse(text, &u, err, sizeof(err)), 0);
	assert_int_equal(strlen(u.host), 255);
	assert_int_equal(strlen(u.host_header), 257);
	memset(text + n, 'a', 256);
	snprintf(text + n + 256, sizeof(text) - n - 256, ":1/");
	assert_int_equal(url_parse(text, &u, err, sizeof(err)), -1);
}

/* A tiny error buffer truncates the message, never overflows. */
static void test_small_error_buffer(void **state)
{
	char err[8];
	struct url u;

	(void)state;
	memset(err, 'x', sizeof(err));
	assert_int_equal(url_parse("ftp://h/", &u, err, sizeof(err)), -1);
	assert_int_equal(err[sizeof(err) - 1], '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepted_shapes),
		cmocka_unit_test(test_rejected_shapes),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_small_error_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
