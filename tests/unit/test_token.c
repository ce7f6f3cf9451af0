/*
 * test_token: HS256 tokens (libcommon/token.c).
 *
 * Issued tokens go round the verifier; two tokens made independently by
 * Python's hmac, hashlib and base64 modules are pasted as literals (a
 * known-answer test in both directions); then every rule of token_verify is
 * broken once, with tokens this file signs itself (its own base64url and
 * a direct HMAC() call), so a failure is the rule under test and not the
 * signature. CRYPTO_memcmp is interposed to prove the signature compare is
 * the constant-time one. Secret files are written to a private temporary
 * directory with the modes under test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "token.h"

#define NOW          1700000000LL
#define LATER        (NOW + 3600)
#define HS256_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* ---- the constant-time compare, interposed --------------------------- */

/* Calls that compared 32 bytes (an HMAC-SHA256); libcrypto's own calls of
 * other lengths, if they reach this definition, are not counted. */
static size_t memcmp_mac_calls;

int CRYPTO_memcmp(const void *in_a, const void *in_b, size_t len)
{
	const unsigned char *a = in_a, *b = in_b;
	unsigned char diff = 0;

	if (len == 32)
		memcmp_mac_calls++;
	for (size_t i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff;
}

/* ---- helpers --------------------------------------------------------- */

static void make_secret(struct token_secret *s, const char *text)
{
	memset(s, 0, sizeof(*s));
	s->len = strlen(text);
	memcpy(s->key, text, s->len);
}

/* Base64url without padding, written apart from token.c's on purpose. */
static char *b64url(const void *data, size_t len)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *in = data;
	char *out = malloc(len * 4 / 3 + 4);
	size_t o = 0;

	assert_non_null(out);
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		size_t n = len - i < 3 ? len - i : 3;

		if (n > 1)
			v |= (unsigned)in[i + 1] << 8;
		if (n > 2)
			v |= in[i + 2];
		for (size_t k = 0; k <= n; k++)
			out[o++] = abc[(v >> (18 - 6 * k)) & 63];
	}
	out[o] = '\0';
	return out;
}

/* "h.p.signature" over already-encoded segments; malloc'd. */
static char *sign_segments(const char *h, const char *p,
			   const struct token_secret *s)
{
	size_t len = strlen(h) + strlen(p) + 1;
	char *input = malloc(len + 1);
	unsigned char mac[32];
	unsigned int mac_len = 0;
	char *sig, *token;

	assert_non_null(input);
	snprintf(input, len + 1, "%s.%s", h, p);
	assert_non_null(HMAC(EVP_sha256(), s->key, (int)s->len,
			     (const unsigned char *)input, len, mac, &mac_len));
	sig = b64url(mac, mac_len);
	token = malloc(len + strlen(sig) + 2);
	assert_non_null(token);
	sprintf(token, "%s.%s", input, sig);
	free(sig);
	free(input);
	return token;
}

/* A token of these two JSON texts, signed with s; malloc'd. */
static char *sign(const char *header, const char *payload,
		  const struct token_secret *s)
{
	char *h = b64url(header, strlen(header));
	char *p = b64url(payload, strlen(payload));
	char *token = sign_segments(h, p, s);

	free(h);
	free(p);
	return token;
}

static struct token_secret secret_a, secret_b, secret_c;

static int setup(void **state)
{
	(void)state;
	make_secret(&secret_a, "secret-a-0123456789abcdefghijklmnopqrstuv");
	make_secret(&secret_b, "secret-b-0123456789abcdefghijklmnopqrstuv");
	make_secret(&secret_c, "secret-c-0123456789abcdefghijklmnopqrstuv");
	return 0;
}

static void assert_claims_equal(const struct token_claims *a,
				const struct token_claims *b)
{
	assert_int_equal(a->role, b->role);
	assert_string_equal(a->svc, b->svc);
	assert_string_equal(a->sub, b->sub);
	assert_int_equal(a->exp, b->exp);
}

/* Verify with secret_a at NOW; on failure the claims must be zeroed. */
static int check(const char *token)
{
	struct token_claims c;
	int rc;

	memset(&c, 0x5a, sizeof(c));
	rc = token_verify(token, &secret_a, 1, NOW, &c);
	if (rc != TOKEN_OK) {
		assert_int_equal(c.role, TOKEN_ROLE_NONE);
		assert_string_equal(c.svc, "");
		assert_string_equal(c.sub, "");
		assert_int_equal(c.exp, 0);
	}
	return rc;
}

/* A token of header and payload signed with secret_a, verified. */
static int check_signed(const char *header, const char *payload)
{
	char *token = sign(header, payload, &secret_a);
	int rc = check(token);

	free(token);
	return rc;
}

static int check_claims(const char *payload)
{
	return check_signed(HS256_HEADER, payload);
}

/* ---- issuing and verifying ------------------------------------------- */

static void test_round_trip(void **state)
{
	struct token_claims in = { TOKEN_ROLE_AGENT, "web", "ci runner",
				   LATER };
	struct token_claims out;
	char token[TOKEN_MAX_LEN + 1];

	(void)state;
	assert_int_equal(token_issue(&in, &secret_a, token, sizeof(token)),
			 TOKEN_OK);
	assert_int_equal(token_verify(token, &secret_a, 1, NOW, &out),
			 TOKEN_OK);
	assert_int_equal(out.role, TOKEN_ROLE_AGENT);
	assert_string_equal(out.svc, "web");
	assert_string_equal(out.sub, "ci runner");
	assert_int_equal(out.exp, LATER);

	/* admin and reader need no svc; sub may be absent. */
	in = (struct token_claims){ TOKEN_ROLE_ADMIN, "", "", LATER };
	assert_int_equal(token_issue(&in, &secret_a, token, sizeof(token)),
			 TOKEN_OK);
	assert_int_equal(token_verify(token, &secret_a, 1, NOW, &out),
			 TOKEN_OK);
	assert_int_equal(out.role, TOKEN_ROLE_ADMIN);
	assert_string_equal(out.svc, "");
	assert_string_equal(out.sub, "");

	/* The longest of everything still fits TOKEN_MAX_LEN + 1 bytes. */
	in = (struct token_claims){ TOKEN_ROLE_READER, "", "", LATER };
	memset(in.svc, 'a', TOKEN_SVC_MAX);
	memset(in.sub, '"', TOKEN_SUB_MAX); /* escaped: twice as long */
	assert_int_equal(token_issue(&in, &secret_a, token, sizeof(token)),
			 TOKEN_OK);
	assert_int_equal(token_verify(token, &secret_a, 1, NOW, &out),
			 TOKEN_OK);
	assert_claims_equal(&out, &in);
}

/*
 * Made with /usr/bin/python3 (hmac, hashlib, base64, json), key
 * b"kat-secret-0123456789abcdefghijklmnop":
 *   header  {"alg":"HS256","typ":"JWT"}
 *   claims  {"role":"agent","svc":"web","sub":"deploy \"bot\" é",
 *            "exp":4102444800}                     (compact, UTF-8)
 */
static const char kat_token[] =
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
	"eyJyb2xlIjoiYWdlbnQiLCJzdmMiOiJ3ZWIiLCJzdWIiOiJkZXBsb3kgXCJib3RcIiDDq"
	"SIsImV4cCI6NDEwMjQ0NDgwMH0."
	"QIJpdfuqL3Ko6KATskUWegXrBysHcDASGEzW2ev7Yns";
/*
 * The same key, as another library might shape a token: blanks, another
 * member order, iat and nbf, a \u escape:
 *   { "typ": "JWT", "alg": "HS256" }
 *   { "iat": 1700000000, "exp": 1700003600, "nbf": 1700000000,
 *     "sub": "ops\u0040example", "role": "admin" }
 */
static const char kat_token_loose[] =
	"eyAidHlwIjogIkpXVCIsICJhbGciOiAiSFMyNTYiIH0."
	"eyAiaWF0IjogMTcwMDAwMDAwMCwgImV4cCI6IDE3MDAwMDM2MDAsICJuYmYiOiAxNzAwM"
	"DAwMDAwLCAic3ViIjogIm9wc1x1MDA0MGV4YW1wbGUiLCAicm9sZSI6ICJhZG1pbiIgfQ."
	"HsKg-JESHzF0pXu5zAggva838VHSmCgGpPaHkLzxGBk";

static void test_known_answer(void **state)
{
	struct token_claims in = { TOKEN_ROLE_AGENT, "web",
				   "deploy \"bot\" \xc3\xa9", 4102444800LL };
	struct token_claims out;
	struct token_secret kat;
	char token[TOKEN_MAX_LEN + 1];

	(void)state;
	make_secret(&kat, "kat-secret-0123456789abcdefghijklmnop");
	assert_int_equal(token_issue(&in, &kat, token, sizeof(token)),
			 TOKEN_OK);
	assert_string_equal(token, kat_token);
	assert_int_equal(token_verify(kat_token, &kat, 1, NOW, &out), TOKEN_OK);
	assert_claims_equal(&out, &in);

	assert_int_equal(token_verify(kat_token_loose, &kat, 1, NOW + 100,
				      &out),
			 TOKEN_OK);
	assert_int_equal(out.role, TOKEN_ROLE_ADMIN);
	assert_string_equal(out.sub, "ops@example");
	assert_string_equal(out.svc, "");
	assert_int_equal(out.exp, 1700003600);
	/* Not the key: */
	assert_int_equal(token_verify(kat_token, &secret_a, 1, NOW, &out),
			 TOKEN_E_SIGNATURE);
}

static void test_missing(void **state)
{
	(void)state;
	assert_int_equal(check(NULL), TOKEN_E_MISSING);
	assert_int_equal(check(""), TOKEN_E_MISSING);
}

static void test_garbage(void **state)
{
	static const char *const garbage[] = {
		"garbage",
		"Bearer a.b.c",
		"...",
		"a.b.c",
		"\xff\xfe.\x01.x",
		"eyJhbGciOiJIUzI1NiJ9",
		"{\"alg\":\"HS256\"}.{}.x",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
		if (check(garbage[i]) != TOKEN_E_MALFORMED)
			fail_msg("accepted garbage %zu", i);
}

static void test_segments(void **state)
{
	struct token_claims in = { TOKEN_ROLE_ADMIN, "", "", LATER };
	char token[TOKEN_MAX_LEN + 1];
	char bad[TOKEN_MAX_LEN + 16];
	const char *dot1, *dot2;

	(void)state;
	assert_int_equal(token_issue(&in, &secret_a, token, sizeof(token)),
			 TOKEN_OK);
	dot1 = strchr(token, '.');
	dot2 = strchr(dot1 + 1, '.');

	/* Two segments, four, a trailing or leading dot. */
	snprintf(bad, sizeof(bad), "%.*s", (int)(dot2 - token), token);
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	snprintf(bad, sizeof(bad), "%s.%s", token, dot2 + 1);
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	snprintf(bad, sizeof(bad), "%s.", token);
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	snprintf(bad, sizeof(bad), ".%s", token);
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	/* Empty segments. */
	snprintf(bad, sizeof(bad), "%.*s.", (int)(dot2 - token), token);
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	snprintf(bad, sizeof(bad), "%.*s.%s", (int)(dot1 - token), token, dot2);
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	/* Blanks around it (the caller strips "Bearer "). */
	snprintf(bad, sizeof(bad), "%s\n", token);
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	snprintf(bad, sizeof(bad), " %s", token);
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	/* And the untouched token is fine. */
	assert_int_equal(check(token), TOKEN_OK);
}

static void test_bad_base64(void **state)
{
	struct token_claims in = { TOKEN_ROLE_ADMIN, "", "", LATER };
	char token[TOKEN_MAX_LEN + 1];
	char bad[TOKEN_MAX_LEN + 16];
	size_t len;
	char *t;

	(void)state;
	assert_int_equal(token_issue(&in, &secret_a, token, sizeof(token)),
			 TOKEN_OK);
	len = strlen(token);

	/* Padding, or the other alphabet's characters, in the signature. */
	snprintf(bad, sizeof(bad), "%s=", token);
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	memcpy(bad, token, len + 1);
	bad[len - 5] = bad[len - 5] == '-' ? '+' : '/';
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	/* 43 characters carry 258 bits: the last 2 must be zero. */
	memcpy(bad, token, len + 1);
	bad[len - 1] = 'B'; /* value 1 */
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);
	/* A length of 4n+1 is no base64 at all. */
	memcpy(bad, token, len);
	bad[len - 43 - 1] = '\0';
	strcat(bad, ".AAAAA");
	assert_int_equal(check(bad), TOKEN_E_MALFORMED);

	/* Padded, '+', or a non-zero tail in the header. */
	t = sign_segments("eyJhbGciOiJIUzI1NiJ9==", "e30", &secret_a);
	assert_int_equal(check(t), TOKEN_E_MALFORMED);
	free(t);
	t = sign_segments("eyJhbGciOiJIUzI1NiJ+", "e30", &secret_a);
	assert_int_equal(check(t), TOKEN_E_MALFORMED);
	free(t);
	/* The claims: 'e30' is "{}"; 'e31' would decode to the same two
	 * bytes if the unused tail bits were ignored. They are not. */
	t = sign_segments("eyJhbGciOiJIUzI1NiJ9", "e31", &secret_a);
	assert_int_equal(check(t), TOKEN_E_MALFORMED);
	free(t);
}

static void test_algorithms(void **state)
{
	static const char *const headers[] = {
		"{\"alg\":\"none\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
		"{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
		"{\"alg\":\"hs256\"}",
		"{\"alg\":\"HS256 \"}",
		"{\"alg\":\"\"}",
		"{\"alg\":null}",
		"{\"alg\":256}",
		"{\"typ\":\"JWT\"}",
		"{\"alg\":\"HS256\",\"typ\":\"jwt\"}",
		"{\"alg\":\"HS256\",\"typ\":\"JWE\"}",
		"{\"alg\":\"HS256\",\"typ\":1}",
		"{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
	};
	const char *payload = "{\"role\":\"admin\",\"exp\":1700003600}";
	char *h, *p, *t;

	(void)state;
	/* Signed with the right key: only the header is wrong. */
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
		if (check_signed(headers[i], payload) != TOKEN_E_ALG)
			fail_msg("accepted header %s", headers[i]);
	/* Without "typ" it is fine. */
	assert_int_equal(check_signed("{\"alg\":\"HS256\"}", payload),
			 TOKEN_OK);
	/* The classic "alg":"none" with an empty or any signature. */
	h = b64url(headers[0], strlen(headers[0]));
	p = b64url(payload, strlen(payload));
	t = malloc(strlen(h) + strlen(p) + 8);
	assert_non_null(t);
	sprintf(t, "%s.%s.", h, p);
	assert_int_equal(check(t), TOKEN_E_MALFORMED);
	sprintf(t, "%s.%s.AA", h, p);
	assert_int_equal(check(t), TOKEN_E_ALG);
	free(t);
	free(h);
	free(p);
	/* Header not an object, not JSON, trailing bytes, repeated alg. */
	assert_int_equal(check_signed("[\"HS256\"]", payload),
			 TOKEN_E_MALFORMED);
	assert_int_equal(check_signed("\"HS256\"", payload), TOKEN_E_MALFORMED);
	assert_int_equal(check_signed("{\"alg\":\"HS256\"", payload),
			 TOKEN_E_MALFORMED);
	assert_int_equal(check_signed("{\"alg\":\"HS256\"}x", payload),
			 TOKEN_E_MALFORMED);
	assert_int_equal(check_signed("{\"alg\":\"HS256\"} \n", payload),
			 TOKEN_OK);
	assert_int_equal(check_signed("{\"alg\":\"none\",\"alg\":\"HS256\"}",
				      payload),
			 TOKEN_E_MALFORMED);
	assert_int_equal(check_signed("{\"alg\":\"HS256\",\"alg\":\"none\"}",
				      payload),
			 TOKEN_E_MALFORMED);
}

static void test_signature(void **state)
{
	struct token_claims in = { TOKEN_ROLE_AGENT, "web", "", LATER };
	char token[TOKEN_MAX_LEN + 1];
	char bad[TOKEN_MAX_LEN + 16];
	char *dot2;
	size_t len;

	(void)state;
	/* Another secret. */
	assert_int_equal(token_issue(&in, &secret_b, token, sizeof(token)),
			 TOKEN_OK);
	assert_int_equal(check(token), TOKEN_E_SIGNATURE);

	assert_int_equal(token_issue(&in, &secret_a, token, sizeof(token)),
			 TOKEN_OK);
	len = strlen(token);
	dot2 = strrchr(token, '.');
	/* A character of the claims changed. */
	memcpy(bad, token, len + 1);
	bad[dot2 - token - 2] = bad[dot2 - token - 2] == 'A' ? 'B' : 'A';
	assert_int_equal(check(bad), TOKEN_E_SIGNATURE);
	/* One bit of the signature. */
	memcpy(bad, token, len + 1);
	bad[len - 10] = bad[len - 10] == 'A' ? 'B' : 'A';
	assert_int_equal(check(bad), TOKEN_E_SIGNATURE);
	/* A signature one byte short or long (valid base64url). */
	memcpy(bad, token, len + 1);
	bad[len - 43 + 40] = '\0';
	assert_int_equal(check(bad), TOKEN_E_SIGNATURE);
	snprintf(bad, sizeof(bad), "%.*sAAAAAAAA", (int)(len - 3), token);
	assert_int_equal(check(bad), TOKEN_E_SIGNATURE);
	/* The right 32 bytes and more after them. */
	snprintf(bad, sizeof(bad), "%sAAAA", token);
	assert_int_equal(check(bad), TOKEN_E_SIGNATURE);
	/* The claims of another token (same key) under this signature. */
	{
		struct token_claims admin = { TOKEN_ROLE_ADMIN, "", "", LATER };
		char other[TOKEN_MAX_LEN + 1];
		const char *o1, *o2;

		assert_int_equal(token_issue(&admin, &secret_a, other,
					     sizeof(other)),
				 TOKEN_OK);
		o1 = strchr(other, '.');
		o2 = strrchr(other, '.');
		snprintf(bad, sizeof(bad), "%.*s%s", (int)(o2 - other), other,
			 dot2);
		assert_int_equal(check(bad), TOKEN_E_SIGNATURE);
		assert_ptr_not_equal(o1, o2);
	}
}

static void test_expiry(void **state)
{
	char payload[128];

	(void)state;
	/* Accepted until exp + TOKEN_LEEWAY, refused from then on. */
	snprintf(payload, sizeof(payload), "{\"role\":\"admin\",\"exp\":%lld}",
		 NOW - TOKEN_LEEWAY + 1);
	assert_int_equal(check_claims(payload), TOKEN_OK);
	snprintf(payload, sizeof(payload), "{\"role\":\"admin\",\"exp\":%lld}",
		 NOW - TOKEN_LEEWAY);
	assert_int_equal(check_claims(payload), TOKEN_E_EXPIRED);
	snprintf(payload, sizeof(payload), "{\"role\":\"admin\",\"exp\":%lld}",
		 NOW - 86400);
	assert_int_equal(check_claims(payload), TOKEN_E_EXPIRED);
	/* nbf, when present, with the same leeway. */
	snprintf(payload, sizeof(payload),
		 "{\"role\":\"admin\",\"exp\":%lld,\"nbf\":%lld}", LATER,
		 NOW + TOKEN_LEEWAY);
	assert_int_equal(check_claims(payload), TOKEN_OK);
	snprintf(payload, sizeof(payload),
		 "{\"role\":\"admin\",\"exp\":%lld,\"nbf\":%lld}", LATER,
		 NOW + TOKEN_LEEWAY + 1);
	assert_int_equal(check_claims(payload), TOKEN_E_NOTYET);
	snprintf(payload, sizeof(payload),
		 "{\"role\":\"admin\",\"exp\":%lld,\"nbf\":\"now\"}", LATER);
	assert_int_equal(check_claims(payload), TOKEN_E_CLAIMS);
}

static void test_bad_claims(void **state)
{
	static const char *const payloads[] = {
		/* role */
		"{\"exp\":1700003600}",
		"{\"role\":\"root\",\"exp\":1700003600}",
		"{\"role\":\"Admin\",\"exp\":1700003600}",
		"{\"role\":\"\",\"exp\":1700003600}",
		"{\"role\":1,\"exp\":1700003600}",
		"{\"role\":[\"admin\"],\"exp\":1700003600}",
		/* svc: required for agent, a service name when present */
		"{\"role\":\"agent\",\"exp\":1700003600}",
		"{\"role\":\"agent\",\"svc\":\"\",\"exp\":1700003600}",
		"{\"role\":\"agent\",\"svc\":\"Web\",\"exp\":1700003600}",
		"{\"role\":\"agent\",\"svc\":\"a/b\",\"exp\":1700003600}",
		"{\"role\":\"agent\",\"svc\":\"-web\",\"exp\":1700003600}",
		"{\"role\":\"agent\",\"svc\":null,\"exp\":1700003600}",
		"{\"role\":\"agent\",\"svc\":"
		"\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"exp\":1700003600}",
		"{\"role\":\"admin\",\"svc\":\"a b\",\"exp\":1700003600}",
		/* sub: printable, bounded */
		"{\"role\":\"admin\",\"sub\":\"a\\nlevel=error\","
		"\"exp\":1700003600}",
		"{\"role\":\"admin\",\"sub\":\"\\u001b[31m\",\"exp\":"
		"1700003600}",
		"{\"role\":\"admin\",\"sub\":7,\"exp\":1700003600}",
		/* exp: a required integer NumericDate */
		"{\"role\":\"admin\"}",
		"{\"role\":\"admin\",\"exp\":\"1700003600\"}",
		"{\"role\":\"admin\",\"exp\":1700003600.5}",
		"{\"role\":\"admin\",\"exp\":0}",
		"{\"role\":\"admin\",\"exp\":-1}",
		"{\"role\":\"admin\",\"exp\":1e300}",
		"{\"role\":\"admin\",\"exp\":null}",
	};
	char payload[512];

	(void)state;
	for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++)
		if (check_claims(payloads[i]) != TOKEN_E_CLAIMS)
			fail_msg("accepted claims %s", payloads[i]);
	/* sub of TOKEN_SUB_MAX bytes is fine, one more is not. */
	snprintf(payload, sizeof(payload),
		 "{\"role\":\"admin\",\"sub\":\"%0*d\",\"exp\":1700003600}",
		 TOKEN_SUB_MAX, 0);
	assert_int_equal(check_claims(payload), TOKEN_OK);
	snprintf(payload, sizeof(payload),
		 "{\"role\":\"admin\",\"sub\":\"%0*d\",\"exp\":1700003600}",
		 TOKEN_SUB_MAX + 1, 0);
	assert_int_equal(check_claims(payload), TOKEN_E_CLAIMS);
	/* Unknown claims are ignored; an svc on admin is returned as is. */
	assert_int_equal(check_claims("{\"role\":\"reader\",\"exp\":1700003600,"
				      "\"jti\":\"x\",\"aud\":[\"a\"]}"),
			 TOKEN_OK);
	assert_int_equal(check_claims("{\"role\":\"admin\",\"svc\":\"web\","
				      "\"exp\":1700003600}"),
			 TOKEN_OK);
	/* Not an object, repeated claims, trailing bytes, NUL inside. */
	assert_int_equal(check_claims("[]"), TOKEN_E_MALFORMED);
	assert_int_equal(check_claims("null"), TOKEN_E_MALFORMED);
	assert_int_equal(check_claims("\"admin\""), TOKEN_E_MALFORMED);
	assert_int_equal(check_claims("{\"role\":\"reader\",\"role\":\"admin\","
				      "\"exp\":1700003600}"),
			 TOKEN_E_MALFORMED);
	assert_int_equal(check_claims("{\"role\":\"admin\",\"exp\":1700003600}"
				      "{}"),
			 TOKEN_E_MALFORMED);
	assert_int_equal(check_claims("{\"role\":\"admin\",\"exp\":1700003600"),
			 TOKEN_E_MALFORMED);
	{
		static const char with_nul[] =
			"{\"role\":\"admin\",\"exp\":1700003600}\0{\"x\":1}";
		/* cJSON keeps a raw NUL in a string, strlen would not. */
		static const char in_sub[] =
			"{\"role\":\"admin\",\"sub\":\"ops\0root\","
			"\"exp\":1700003600}";
		char *h = b64url(HS256_HEADER, strlen(HS256_HEADER));
		const void *texts[] = { with_nul, with_nul, in_sub };
		const size_t lens[] = { sizeof(with_nul) - 1,
					strlen(with_nul) + 1,
					sizeof(in_sub) - 1 };

		/* A NUL then more, a NUL alone at the end, one in a string. */
		for (size_t i = 0; i < 3; i++) {
			char *p = b64url(texts[i], lens[i]);
			char *t = sign_segments(h, p, &secret_a);

			assert_int_equal(check(t), TOKEN_E_MALFORMED);
			free(t);
			free(p);
		}
		free(h);
	}
}

static void test_oversize(void **state)
{
	char *big = malloc(TOKEN_MAX_LEN + 2);
	char *payload = malloc(TOKEN_MAX_LEN);
	bool fitted = false, over = false;

	(void)state;
	assert_non_null(big);
	assert_non_null(payload);
	memset(big, 'A', TOKEN_MAX_LEN + 1);
	big[TOKEN_MAX_LEN + 1] = '\0';
	big[10] = '.';
	big[20] = '.';
	assert_int_equal(check(big), TOKEN_E_TOOBIG);
	/* Grow a well-signed token past the cap: up to TOKEN_MAX_LEN it
	 * verifies, from TOKEN_MAX_LEN + 1 it is refused unparsed. */
	for (int pad = 2900; !over; pad++) {
		char *t;
		size_t len;
		int rc;

		snprintf(payload, TOKEN_MAX_LEN,
			 "{\"role\":\"admin\",\"exp\":1700003600,"
			 "\"pad\":\"%0*d\"}",
			 pad, 0);
		t = sign(HS256_HEADER, payload, &secret_a);
		len = strlen(t);
		rc = check(t);
		if (len <= TOKEN_MAX_LEN) {
			assert_int_equal(rc, TOKEN_OK);
			fitted |= len > TOKEN_MAX_LEN - 4;
		} else {
			assert_int_equal(rc, TOKEN_E_TOOBIG);
			over = true;
		}
		free(t);
	}
	assert_true(fitted);
	/* A header over TOKEN_HEADER_MAX. */
	snprintf(payload, TOKEN_MAX_LEN, "{\"alg\":\"HS256\",\"kid\":\"%0*d\"}",
		 TOKEN_HEADER_MAX, 0);
	assert_int_equal(check_signed(payload, "{\"role\":\"admin\",\"exp\":"
					       "1700003600}"),
			 TOKEN_E_MALFORMED);
	free(payload);
	free(big);
}

static void test_deep_json(void **state)
{
	char payload[TOKEN_MAX_LEN];
	size_t len;

	(void)state;
	/* TOKEN_DEPTH_MAX levels are fine, one more is not. */
	assert_int_equal(check_claims("{\"role\":\"admin\",\"exp\":1700003600,"
				      "\"x\":[[[1]]]}"),
			 TOKEN_OK);
	assert_int_equal(check_claims("{\"role\":\"admin\",\"exp\":1700003600,"
				      "\"x\":[[[[1]]]]}"),
			 TOKEN_E_MALFORMED);
	assert_int_equal(
		check_signed("{\"alg\":\"HS256\",\"x\":{\"y\":[[{}]]}}",
			     "{\"role\":\"admin\",\"exp\":1700003600}"),
		TOKEN_E_MALFORMED);
	/* 1,000 levels, signed: refused before cJSON recurses. */
	len = (size_t)snprintf(payload, sizeof(payload),
			       "{\"role\":\"admin\",\"exp\":1700003600,\"x\":");
	for (int i = 0; i < 1000; i++)
		payload[len++] = '[';
	for (int i = 0; i < 1000; i++)
		payload[len++] = ']';
	payload[len++] = '}';
	payload[len] = '\0';
	assert_int_equal(check_claims(payload), TOKEN_E_MALFORMED);
	/* Unbalanced, deep, in the header (no signature needed to reach). */
	memset(payload, '[', 300);
	payload[300] = '\0';
	assert_int_equal(check_signed(payload, "{}"), TOKEN_E_MALFORMED);
	/* More than TOKEN_KEYS_MAX members. */
	len = (size_t)snprintf(payload, sizeof(payload),
			       "{\"role\":\"admin\",\"exp\":1700003600");
	for (int i = 0; i < TOKEN_KEYS_MAX - 1; i++)
		len += (size_t)snprintf(payload + len, sizeof(payload) - len,
					",\"k%d\":1", i);
	strcpy(payload + len, "}");
	assert_int_equal(check_claims(payload), TOKEN_E_MALFORMED);
	/* Drop the last ,"k30":1 to have exactly TOKEN_KEYS_MAX. */
	payload[len - 8] = '}';
	payload[len - 7] = '\0';
	assert_int_equal(check_claims(payload), TOKEN_OK);
}

static void test_rotation(void **state)
{
	struct token_claims in = { TOKEN_ROLE_READER, "", "dash", LATER };
	struct token_secret both[2], new_first[2];
	struct token_claims out;
	char old_token[TOKEN_MAX_LEN + 1], new_token[TOKEN_MAX_LEN + 1];
	char other[TOKEN_MAX_LEN + 1];

	(void)state;
	both[0] = secret_a; /* old */
	both[1] = secret_b; /* new */
	new_first[0] = secret_b;
	new_first[1] = secret_a;
	assert_int_equal(token_issue(&in, &secret_a, old_token,
				     sizeof(old_token)),
			 TOKEN_OK);
	assert_int_equal(token_issue(&in, &secret_b, new_token,
				     sizeof(new_token)),
			 TOKEN_OK);
	assert_int_equal(token_issue(&in, &secret_c, other, sizeof(other)),
			 TOKEN_OK);
	/* During the window both verify, in either order. */
	assert_int_equal(token_verify(old_token, both, 2, NOW, &out), TOKEN_OK);
	assert_string_equal(out.sub, "dash");
	assert_int_equal(token_verify(new_token, both, 2, NOW, &out), TOKEN_OK);
	assert_int_equal(token_verify(old_token, new_first, 2, NOW, &out),
			 TOKEN_OK);
	assert_int_equal(token_verify(new_token, new_first, 2, NOW, &out),
			 TOKEN_OK);
	assert_int_equal(token_verify(other, both, 2, NOW, &out),
			 TOKEN_E_SIGNATURE);
	/* After it, the old one no longer does. */
	assert_int_equal(token_verify(old_token, &secret_b, 1, NOW, &out),
			 TOKEN_E_SIGNATURE);
	assert_int_equal(token_verify(new_token, &secret_b, 1, NOW, &out),
			 TOKEN_OK);
}

static void test_constant_time_compare(void **state)
{
	struct token_claims in = { TOKEN_ROLE_ADMIN, "", "", LATER };
	struct token_secret both[2];
	struct token_claims out;
	char token[TOKEN_MAX_LEN + 1];

	(void)state;
	both[0] = secret_b;
	both[1] = secret_c;
	assert_int_equal(token_issue(&in, &secret_a, token, sizeof(token)),
			 TOKEN_OK);
	memcmp_mac_calls = 0;
	assert_int_equal(token_verify(token, &secret_a, 1, NOW, &out),
			 TOKEN_OK);
	assert_int_equal(memcmp_mac_calls, 1);
	/* Every secret is compared, matching or not. */
	memcmp_mac_calls = 0;
	assert_int_equal(token_verify(token, both, 2, NOW, &out),
			 TOKEN_E_SIGNATURE);
	assert_int_equal(memcmp_mac_calls, 2);
}

static void test_bad_arguments(void **state)
{
	struct token_claims in = { TOKEN_ROLE_ADMIN, "", "", LATER };
	struct token_claims out;
	struct token_secret short_secret, secrets[2];
	char token[TOKEN_MAX_LEN + 1];

	(void)state;
	make_secret(&short_secret, "0123456789abcdef0123456789abcde"); /* 31 */
	assert_int_equal(token_issue(&in, &secret_a, token, sizeof(token)),
			 TOKEN_OK);
	assert_int_equal(token_verify(token, &secret_a, 0, NOW, &out),
			 TOKEN_E_INVALID);
	assert_int_equal(token_verify(token, NULL, 1, NOW, &out),
			 TOKEN_E_INVALID);
	assert_int_equal(token_verify(token, &secret_a, 1, NOW, NULL),
			 TOKEN_E_INVALID);
	assert_int_equal(token_verify(token, &short_secret, 1, NOW, &out),
			 TOKEN_E_INVALID);
	secrets[0] = secret_a;
	secrets[1] = short_secret;
	assert_int_equal(token_verify(token, secrets, 2, NOW, &out),
			 TOKEN_E_INVALID);
	assert_int_equal(token_issue(&in, &short_secret, token, sizeof(token)),
			 TOKEN_E_INVALID);
	assert_string_equal(token, "");
	assert_int_equal(token_issue(NULL, &secret_a, token, sizeof(token)),
			 TOKEN_E_INVALID);
	assert_int_equal(token_issue(&in, &secret_a, NULL, 10),
			 TOKEN_E_INVALID);
}

static void test_issue_refuses(void **state)
{
	struct token_claims bad[] = {
		{ TOKEN_ROLE_NONE, "", "", LATER },
		{ (enum token_role)99, "", "", LATER },
		{ TOKEN_ROLE_AGENT, "", "", LATER }, /* agent needs svc */
		{ TOKEN_ROLE_AGENT, "Web", "", LATER },
		{ TOKEN_ROLE_AGENT, "web", "a\tb", LATER }, /* control in sub */
		{ TOKEN_ROLE_ADMIN, "", "", 0 },            /* exp required */
		{ TOKEN_ROLE_ADMIN, "", "", -5 },
		{ TOKEN_ROLE_ADMIN, "", "", INT64_MAX },
	};
	struct token_claims ok = { TOKEN_ROLE_ADMIN, "", "", LATER };
	char token[TOKEN_MAX_LEN + 1];
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcpy(token, "junk");
		if (token_issue(&bad[i], &secret_a, token, sizeof(token)) !=
		    TOKEN_E_CLAIMS)
			fail_msg("issued bad claims %zu", i);
		assert_string_equal(token, "");
	}
	/* The buffer: exactly the length + 1 is enough, one less is not. */
	assert_int_equal(token_issue(&ok, &secret_a, token, sizeof(token)),
			 TOKEN_OK);
	len = strlen(token);
	assert_int_equal(token_issue(&ok, &secret_a, token, len + 1), TOKEN_OK);
	assert_int_equal(strlen(token), len);
	assert_int_equal(token_issue(&ok, &secret_a, token, len),
			 TOKEN_E_SPACE);
	assert_int_equal(token_issue(&ok, &secret_a, token, 0), TOKEN_E_SPACE);
}

/* ---- the secret file ------------------------------------------------- */

static char tmpdir[64];

static const char *write_file(const char *name, const void *data, size_t len,
			      mode_t mode)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static int load(const char *name, const char *text, mode_t mode,
		struct token_secret *s, char *err)
{
	const char *path = write_file(name, text, strlen(text), mode);
	int rc = token_load_secret(path, s, err, 256);

	unlink(path);
	return rc;
}

static void test_load_secret(void **state)
{
	static const char hex64[] = "00112233445566778899aabbccddeeff0011223344"
				    "5566778899aabbccddeeff";
	struct token_secret s;
	char err[256], big[TOKEN_SECRET_MAX + 4], path[128];
	unsigned char binary[40];

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_token.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));

	/* A newline (or CRLF, or several) is not key material. */
	snprintf(big, sizeof(big), "%s\n", hex64);
	assert_int_equal(load("nl", big, 0600, &s, err), TOKEN_OK);
	assert_int_equal(s.len, 64);
	assert_memory_equal(s.key, hex64, 64);
	assert_string_equal(err, "");
	snprintf(big, sizeof(big), "%s\r\n\n", hex64);
	assert_int_equal(load("crlf", big, 0400, &s, err), TOKEN_OK);
	assert_int_equal(s.len, 64);
	/* Group-readable is fine (root:discovery 0640). */
	assert_int_equal(load("group", hex64, 0640, &s, err), TOKEN_OK);
	/* Raw bytes, NULs included, are kept as they are. */
	for (size_t i = 0; i < sizeof(binary); i++)
		binary[i] = (unsigned char)(i * 37);
	write_file("bin", binary, sizeof(binary), 0600);
	snprintf(path, sizeof(path), "%s/bin", tmpdir);
	assert_int_equal(token_load_secret(path, &s, err, sizeof(err)),
			 TOKEN_OK);
	assert_int_equal(s.len, sizeof(binary));
	assert_memory_equal(s.key, binary, sizeof(binary));
	unlink(path);

	/* Refused: readable by others, writable by the group. */
	assert_int_equal(load("world", hex64, 0644, &s, err), TOKEN_E_SECRET);
	assert_non_null(strstr(err, "/world: "));
	assert_int_equal(s.len, 0);
	assert_int_equal(load("gw", hex64, 0660, &s, err), TOKEN_E_SECRET);
	assert_int_equal(load("ox", hex64, 0601, &s, err), TOKEN_E_SECRET);
	/* Too short (after stripping), too long, at the limits. */
	assert_int_equal(load("short", "0123456789abcdef0123456789abcde\n",
			      0600, &s, err),
			 TOKEN_E_SECRET);
	assert_non_null(strstr(err, "under 32 bytes"));
	assert_int_equal(load("min", "0123456789abcdef0123456789abcdef\n", 0600,
			      &s, err),
			 TOKEN_OK);
	assert_int_equal(s.len, TOKEN_SECRET_MIN);
	memset(big, 'k', TOKEN_SECRET_MAX);
	strcpy(big + TOKEN_SECRET_MAX, "\r\n");
	assert_int_equal(load("max", big, 0600, &s, err), TOKEN_OK);
	assert_int_equal(s.len, TOKEN_SECRET_MAX);
	strcpy(big + TOKEN_SECRET_MAX, "k\n");
	assert_int_equal(load("over", big, 0600, &s, err), TOKEN_E_SECRET);
	assert_non_null(strstr(err, "over 1024 bytes"));
	assert_int_equal(load("empty", "", 0600, &s, err), TOKEN_E_SECRET);

	/* Missing, a directory, a FIFO (which must not block). */
	snprintf(path, sizeof(path), "%s/absent", tmpdir);
	assert_int_equal(token_load_secret(path, &s, err, sizeof(err)),
			 TOKEN_E_IO);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(token_load_secret(tmpdir, &s, err, sizeof(err)),
			 TOKEN_E_SECRET);
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(token_load_secret(path, &s, err, sizeof(err)),
			 TOKEN_E_SECRET);
	unlink(path);
	/* No err buffer is fine. */
	assert_int_equal(token_load_secret(tmpdir, &s, NULL, 0),
			 TOKEN_E_SECRET);
	assert_int_equal(token_load_secret(NULL, &s, err, sizeof(err)),
			 TOKEN_E_INVALID);

	token_secret_wipe(&s);
	assert_int_equal(s.len, 0);
	assert_int_equal(rmdir(tmpdir), 0);
}

/* ---- names and codes ------------------------------------------------- */

static void test_names_and_codes(void **state)
{
	(void)state;
	assert_string_equal(token_role_name(TOKEN_ROLE_AGENT), "agent");
	assert_string_equal(token_role_name(TOKEN_ROLE_ADMIN), "admin");
	assert_string_equal(token_role_name(TOKEN_ROLE_READER), "reader");
	assert_string_equal(token_role_name(TOKEN_ROLE_NONE), "");
	assert_string_equal(token_role_name((enum token_role)42), "");
	assert_int_equal(token_role_parse("reader"), TOKEN_ROLE_READER);
	assert_int_equal(token_role_parse("agent"), TOKEN_ROLE_AGENT);
	assert_int_equal(token_role_parse("READER"), TOKEN_ROLE_NONE);
	assert_int_equal(token_role_parse(""), TOKEN_ROLE_NONE);
	assert_int_equal(token_role_parse(NULL), TOKEN_ROLE_NONE);

	for (int e = TOKEN_E_SECRET; e <= TOKEN_OK; e++)
		assert_string_not_equal(token_strerror(e),
					"unknown token error");
	assert_string_equal(token_strerror(-99), "unknown token error");
	assert_string_equal(token_strerror(TOKEN_E_EXPIRED), "token expired");

	assert_int_equal(token_http_status(TOKEN_OK), 200);
	for (int e = TOKEN_E_CLAIMS; e <= TOKEN_E_MISSING; e++)
		assert_int_equal(token_http_status(e), 401);
	assert_int_equal(token_http_status(TOKEN_E_NOMEM), 500);
	assert_int_equal(token_http_status(TOKEN_E_CRYPTO), 500);
	assert_int_equal(token_http_status(TOKEN_E_INVALID), 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_segments),
		cmocka_unit_test(test_bad_base64),
		cmocka_unit_test(test_algorithms),
		cmocka_unit_test(test_signature),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_bad_claims),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_deep_json),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_constant_time_compare),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_issue_refuses),
		cmocka_unit_test(test_load_secret),
		cmocka_unit_test(test_names_and_codes),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
