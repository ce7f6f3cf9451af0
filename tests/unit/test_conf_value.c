/*
 * test_conf_value: unit tests for libcommon/conf_value.c, the scalar
 * parsers behind the config loader that programs also use on their own
 * (durations and sizes of command-line flags, listen addresses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "conf.h"

#define ERRLEN  512
#define KIB     (INT64_C(1) << 10)
#define MIB     (INT64_C(1) << 20)
#define HOUR_MS (INT64_C(3600) * 1000)

static void test_parse_duration(void **state)
{
	static const struct {
		const char *text;
		int64_t ms;
	} good[] = {
		{ "0", 0 },
		{ "0ms", 0 },
		{ "250ms", 250 },
		{ "10s", 10000 },
		{ "5m", 300000 },
		{ "1h", HOUR_MS },
		{ "1.5s", 1500 },
		{ "0.5m", 30000 },
		{ "010s", 10000 },
		{ "9223372036854775807ms", INT64_MAX },
		{ "2562047788015h", INT64_C(2562047788015) * HOUR_MS },
	};
	static const char *const bad[] = {
		"",
		"10",
		"-1s",
		"+1s",
		"1.5ms",
		"10x",
		"1 s",
		"s",
		"1.s",
		".5s",
		"1S",
		"1h30m",
		"0x10s",
		"1.0000000001s",
		"9223372036854775808ms",
		"2562047788016h",
		"99999999999999999999999s",
	};
	int64_t ms;
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = -1;
		assert_int_equal(conf_parse_duration(good[i].text, &ms), 0);
		assert_true(ms == good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 77;
		assert_int_equal(conf_parse_duration(bad[i], &ms), -1);
		assert_int_equal(ms, 77);
	}
	assert_int_equal(conf_parse_duration(NULL, &ms), -1);
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *text;
		int64_t bytes;
	} good[] = {
		{ "0", 0 },
		{ "512", 512 },
		{ "512B", 512 },
		{ "64KiB", 65536 },
		{ "1MiB", MIB },
		{ "1GiB", 1024 * MIB },
		{ "1.5KiB", 1536 },
		{ "8589934591GiB", INT64_C(8589934591) << 30 },
	};
	static const char *const bad[] = {
		"",
		"1KB",
		"1K",
		"1kib",
		"-1",
		"1 KiB",
		"B",
		"0.5B",
		"1.5",
		"8589934592GiB",
		"9223372036854775808",
	};
	int64_t bytes;
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		bytes = -1;
		assert_int_equal(conf_parse_size(good[i].text, &bytes), 0);
		assert_true(bytes == good[i].bytes);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(conf_parse_size(bad[i], &bytes), -1);
}

static void test_parse_addr(void **state)
{
	static const struct {
		const char *text, *host, *formatted;
		int port;
	} good[] = {
		{ "127.0.0.1:5916", "127.0.0.1", "127.0.0.1:5916", 5916 },
		{ "localhost:80", "localhost", "localhost:80", 80 },
		{ "[::1]:5916", "::1", "[::1]:5916", 5916 },
		{ "[::]:65535", "::", "[::]:65535", 65535 },
		{ ":8080", "", ":8080", 8080 },
		{ "0.0.0.0:0", "0.0.0.0", "0.0.0.0:0", 0 },
	};
	static const char *const bad[] = {
		"",        "host",         "host:",   "host:65536",  "host:-1",
		"host:+1", "host:8o",      "::1:80",  "[::1]",       "[::1]80",
		"[]:80",   "[1.2.3.4]:80", "ho st:1", "host:123456", "[::1:80",
	};
	struct conf_addr addr;
	char buf[300], longhost[300];
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(conf_parse_addr(good[i].text, &addr), 0);
		assert_string_equal(addr.host, good[i].host);
		assert_int_equal(addr.port, good[i].port);
		assert_string_equal(conf_addr_format(&addr, buf, sizeof(buf)),
				    good[i].formatted);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(conf_parse_addr(bad[i], &addr), -1);

	memset(longhost, 'h', 255);
	snprintf(longhost + 255, sizeof(longhost) - 255, ":1");
	assert_int_equal(conf_parse_addr(longhost, &addr), 0);
	snprintf(longhost + 255, sizeof(longhost) - 255, "h:1");
	assert_int_equal(conf_parse_addr(longhost, &addr), -1);
}

static void test_addr_resolve(void **state)
{
	struct conf_addr a = { .host = "127.0.0.1", .port = 5916 };
	struct sockaddr_storage ss;
	char err[ERRLEN];

	(void)state;
	assert_int_equal(conf_addr_resolve(&a, "listen.http", &ss, err,
					   sizeof(err)),
			 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 5916);
	snprintf(a.host, sizeof(a.host), "::1");
	assert_int_equal(conf_addr_resolve(&a, "x", &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	snprintf(a.host, sizeof(a.host), "no such host.invalid");
	assert_int_equal(conf_addr_resolve(&a, "listen.http", &ss, err,
					   sizeof(err)),
			 -1);
	assert_true(strncmp(err, "listen.http: no such host.invalid: ", 35) ==
		    0);
}

static void test_redis_url(void **state)
{
	struct redis_url u;
	char err[ERRLEN];
	static const char *const bad[] = {
		NULL,
		"",
		"http://h:1",
		"rediss://h",
		"redis://",
		"redis:///0",
		"redis://h:0",
		"redis://h:99999",
		"redis://h/x",
		"redis://h/-1",
		"redis://h/99999999",
		"redis://user@h",
		"redis://u:@h",
		"redis://:@h",
		"redis://::1:6379",
		"redis://h /0",
	};

	(void)state;
	assert_int_equal(conf_redis_url_parse("redis://127.0.0.1", &u, err,
					      sizeof(err)),
			 0);
	assert_string_equal(u.addr.host, "127.0.0.1");
	assert_int_equal(u.addr.port, 6379);
	assert_int_equal(u.db, 0);
	assert_string_equal(u.password, "");
	assert_int_equal(conf_redis_url_parse("redis://"
					      ":s3@cr:et@r.example:6380/2",
					      &u, err, sizeof(err)),
			 0);
	assert_string_equal(u.password, "s3@cr:et");
	assert_string_equal(u.addr.host, "r.example");
	assert_int_equal(u.addr.port, 6380);
	assert_int_equal(u.db, 2);
	assert_int_equal(conf_redis_url_parse("redis://app:pa/ss@h/3", &u, err,
					      sizeof(err)),
			 0);
	assert_string_equal(u.user, "app");
	assert_string_equal(u.password, "pa/ss");
	assert_string_equal(u.addr.host, "h");
	assert_int_equal(u.db, 3);
	assert_int_equal(conf_redis_url_parse("redis://[::1]/", &u, err,
					      sizeof(err)),
			 0);
	assert_string_equal(u.addr.host, "::1");
	assert_int_equal(u.addr.port, 6379);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(conf_redis_url_parse(bad[i], &u, err,
						      sizeof(err)),
				 -1);
		assert_true(err[0] != '\0');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_addr_resolve),
		cmocka_unit_test(test_redis_url),
	};

	return cmocka_run_group_tests_name("conf_value", tests, NULL, NULL);
}
