/*
 * Unit tests for dconf_webhook_parse, the API's way into the config's
 * rows: a JSON body gets the config's defaults, what the rows refuse is
 * -1 with the body's position and the key, what the checks refuse is -2
 * with webhooks.NAME.key, and the secrets are read and decoded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../discoveryd/dconf.h"

static char dir[] = "/tmp/test_dconf_webhook.XXXXXX";
static char secret[300];

static int setup(void **state)
{
	FILE *f;

	(void)state;
	strcpy(dir, "/tmp/test_dconf_webhook.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(secret, sizeof(secret), "%s/whsec", dir);
	f = fopen(secret, "w");
	if (!f)
		return -1;
	/* 32 bytes, base64, then a second secret (a rotation). */
	fputs("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"
	      "# the old one\n"
	      "whsec_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4\n",
	      f);
	fclose(f);
	return chmod(secret, 0600);
}

static int teardown(void **state)
{
	(void)state;
	unlink(secret);
	return rmdir(dir);
}

/* The body: before, the secret file's path, after. */
static int parse(const char *before, const char *after, struct dconf_webhook *w,
		 char *err, size_t errlen)
{
	char body[1024];

	snprintf(body, sizeof(body), "%s%s%s", before, secret, after);
	return dconf_webhook_parse(body, strlen(body), "body", "hook", w, err,
				   errlen);
}

#define URL_THEN_SECRET "{\"url\":\"http://h/\",\"secret_file\":\""

static void test_defaults_and_secrets(void **state)
{
	struct dconf_webhook w;
	char err[600];

	(void)state;
	assert_int_equal(parse("{\"url\":\"https://h.example/x\","
			       "\"secret_file\":\"",
			       "\",\"filter\":{\"kinds\":[\"invalidate\"]}}",
			       &w, err, sizeof(err)),
			 0);
	assert_string_equal(w.url, "https://h.example/x");
	assert_int_equal(w.timeout_ms, 15000);
	assert_int_equal(w.retry_initial_ms, 1000);
	assert_int_equal(w.max_in_flight, 1);
	assert_int_equal(w.n_keys, 2);
	assert_int_equal(w.keys[0].len, 32);
	assert_int_equal(w.keys[1].len, 24);
	assert_int_not_equal(w.kinds_mask, 0);
	dconf_webhook_release(&w);
	assert_null(w.url);
}

static void test_rows_refuse_with_position(void **state)
{
	struct dconf_webhook w;
	char err[600];

	(void)state;
	assert_int_equal(parse(URL_THEN_SECRET, "\",\"bogus\":1}", &w, err,
			       sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "body:1:"));
	assert_non_null(strstr(err, "unknown key 'bogus'"));
	dconf_webhook_release(&w);
	assert_int_equal(parse(URL_THEN_SECRET, "\",\"max_in_flight\":65}", &w,
			       err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "'max_in_flight'"));
	dconf_webhook_release(&w);
	assert_int_equal(dconf_webhook_parse("{\"url\":\"http://h/\"}", 19,
					     "body", "hook", &w, err,
					     sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "secret_file"));
	dconf_webhook_release(&w);
}

static void test_checks_refuse_naming_the_key(void **state)
{
	struct dconf_webhook w;
	char err[600];

	(void)state;
	assert_int_equal(parse("{\"url\":\"ftp://h/\",\"secret_file\":\"",
			       "\"}", &w, err, sizeof(err)),
			 -2);
	assert_string_equal(err, "webhooks.hook.url: unsupported scheme 'ftp' "
				 "(http or https only)");
	dconf_webhook_release(&w);
	assert_int_equal(chmod(secret, 0640), 0);
	assert_int_equal(parse(URL_THEN_SECRET, "\"}", &w, err, sizeof(err)),
			 -2);
	assert_non_null(strstr(err, "webhooks.hook.secret_file: "));
	assert_non_null(strstr(err, "chmod 600"));
	assert_int_equal(w.n_keys, 0);
	dconf_webhook_release(&w);
	assert_int_equal(chmod(secret, 0600), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_secrets),
		cmocka_unit_test(test_rows_refuse_with_position),
		cmocka_unit_test(test_checks_refuse_naming_the_key),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
