/*
 * Unit tests for the Standard Webhooks signature: the specification's own
 * vector, several keys during a rotation, and which secrets decode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../discoveryd/webhook_sign.h"

/* From the Standard Webhooks specification (and Svix's libraries' tests). */
#define VECTOR_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VECTOR_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VECTOR_TS     1614265330
#define VECTOR_BODY   "{\"test\": 2432232314}"
#define VECTOR_SIG    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static void test_specification_vector(void **state)
{
	struct dconf_webhook_key key;
	char sig[WEBHOOK_SIG_MAX];

	(void)state;
	assert_int_equal(webhook_key_decode(VECTOR_SECRET, &key), 0);
	assert_int_equal(key.len, 24);
	assert_int_equal(webhook_sign(&key, 1, VECTOR_ID, VECTOR_TS,
				      VECTOR_BODY, strlen(VECTOR_BODY), sig,
				      sizeof(sig)),
			 0);
	assert_string_equal(sig, VECTOR_SIG);
	/* The prefix may be left out. */
	assert_int_equal(webhook_key_decode(VECTOR_SECRET + 6, &key), 0);
	assert_int_equal(key.len, 24);
}

static void test_rotation_signs_with_every_key(void **state)
{
	struct dconf_webhook_key keys[2];
	char sig[WEBHOOK_SIG_MAX];

	(void)state;
	assert_int_equal(webhook_key_decode(VECTOR_SECRET, &keys[0]), 0);
	/* 32 bytes: "0123456789abcdef0123456789abcdef" */
	assert_int_equal(webhook_key_decode("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMj"
					    "M0NTY3ODlhYmNkZWY=",
					    &keys[1]),
			 0);
	assert_int_equal(keys[1].len, 32);
	assert_int_equal(webhook_sign(keys, 2, VECTOR_ID, VECTOR_TS,
				      VECTOR_BODY, strlen(VECTOR_BODY), sig,
				      sizeof(sig)),
			 0);
	assert_true(strncmp(sig, VECTOR_SIG " v1,", strlen(VECTOR_SIG) + 4) ==
		    0);
	assert_int_equal(strlen(sig), 2 * 47 + 1);
}

static void test_bad_secrets(void **state)
{
	struct dconf_webhook_key key;

	(void)state;
	/* 16 bytes: too short. */
	assert_int_equal(webhook_key_decode("whsec_MDEyMzQ1Njc4OWFiY2RlZg==",
					    &key),
			 -2);
	assert_int_equal(webhook_key_decode("whsec_", &key), -1);
	assert_int_equal(webhook_key_decode("whsec_not base64 at all!", &key),
			 -1);
	assert_int_equal(webhook_key_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2L"
					    "aLaS",
					    &key),
			 -1); /* not a multiple of 4 */
	assert_int_equal(webhook_key_decode("whsec_MfKQ9r8GKYqrTwjUPD8I=PZIo2L"
					    "aLaSw",
					    &key),
			 -1); /* padding inside */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_specification_vector),
		cmocka_unit_test(test_rotation_signs_with_every_key),
		cmocka_unit_test(test_bad_secrets),
	};

	return cmocka_run_group_tests_name("webhook_sign", tests, NULL, NULL);
}
