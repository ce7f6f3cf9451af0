/*
 * fuzz_token: libFuzzer harness for token_verify, the HS256 JWT check
 * (libcommon/token.c) that runs on the Authorization header of anyone who
 * can reach a listener.
 *
 * A random string almost never carries a valid signature, so fuzzing the
 * text alone would only ever reach the header and the MAC comparison. The
 * first byte of an input therefore picks a mode:
 *
 *   even    the rest is the token text as received (cut at a NUL, as a
 *           header value is), verified against two secrets (a rotation);
 *   odd     the rest is "HEADER JSON\0CLAIMS JSON" (no NUL: the standard
 *           header, and the whole rest is the claims); the harness encodes
 *           both in base64url and signs them with its own HMAC, so the
 *           claims parser is reached with arbitrary JSON. With bit 1 set,
 *           it signs with a secret the verifier does not hold.
 *
 * Checks, beyond "no crash, no leak, no undefined behaviour":
 *   - the result is a TOKEN_E_* code token_http_status maps to 401 (or OK);
 *     on failure the claims are zeroed;
 *   - an accepted token has claims token.h allows (known role, svc for an
 *     agent and well-formed, sub printable, not expired), and token_issue
 *     of those claims verifies to the same claims;
 *   - a token signed with a foreign secret is refused before its claims
 *     are read: never OK, CLAIMS, EXPIRED or NOTYET.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "proto.h"
#include "token.h"

#define NOW INT64_C(1800000000) /* 2027-01-15 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr,                                        \
				"fuzz_token: %s:%d: check failed: %s\n",       \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

static const char standard_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static struct token_secret secrets[2], foreign;

static void make_secret(struct token_secret *s, char fill, size_t len)
{
	memset(s->key, fill, len);
	s->len = len;
}

/* Base64url without padding; out has room for 4 * (len + 2) / 3 + 1. */
static size_t b64url(const unsigned char *in, size_t len, char *out)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqr"
				  "stuvwxyz0123456789-_";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		if (i + 1 < len)
			out[o++] = abc[v >> 6 & 63];
		if (i + 2 < len)
			out[o++] = abc[v & 63];
	}
	out[o] = '\0';
	return o;
}

/* HEADER.CLAIMS.MAC, malloc'd, signed with secret. */
static char *sign(const unsigned char *header, size_t header_len,
		  const unsigned char *claims, size_t claims_len,
		  const struct token_secret *secret)
{
	size_t cap = 4 * (header_len + claims_len + 32 + 6) / 3 + 8, n;
	unsigned char mac[32];
	unsigned int mac_len = 0;
	char *token = malloc(cap);

	CHECK(token != NULL);
	n = b64url(header, header_len, token);
	token[n++] = '.';
	n += b64url(claims, claims_len, token + n);
	CHECK(HMAC(EVP_sha256(), secret->key, (int)secret->len,
		   (const unsigned char *)token, n, mac, &mac_len) &&
	      mac_len == sizeof(mac));
	token[n++] = '.';
	n += b64url(mac, sizeof(mac), token + n);
	CHECK(n < cap);
	return token;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static void check_accepted(const struct token_claims *c)
{
	struct token_claims again;
	char issued[TOKEN_MAX_LEN + 1];

	CHECK(c->role == TOKEN_ROLE_AGENT || c->role == TOKEN_ROLE_ADMIN ||
	      c->role == TOKEN_ROLE_READER);
	CHECK(c->role != TOKEN_ROLE_AGENT || c->svc[0]);
	CHECK(!c->svc[0] || proto_valid_name(c->svc));
	CHECK(strnlen(c->sub, sizeof(c->sub)) <= TOKEN_SUB_MAX);
	CHECK(printable(c->sub));
	CHECK(c->exp > 0 && NOW < c->exp + TOKEN_LEEWAY);

	/* What the daemon accepts, discoveryctl can issue, and back. */
	CHECK(token_issue(c, &secrets[0], issued, sizeof(issued)) == TOKEN_OK);
	CHECK(token_verify(issued, secrets, 2, NOW, &again) == TOKEN_OK);
	CHECK(again.role == c->role && again.exp == c->exp);
	CHECK(strcmp(again.svc, c->svc) == 0 && strcmp(again.sub, c->sub) == 0);
}

static void check_refused(int rc, const struct token_claims *c)
{
	static const struct token_claims zero;

	CHECK(rc <= TOKEN_E_MISSING && rc >= TOKEN_E_CLAIMS);
	CHECK(token_http_status(rc) == 401);
	CHECK(token_strerror(rc)[0] != '\0');
	CHECK(memcmp(c, &zero, sizeof(zero)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct token_claims claims;
	const uint8_t *rest = data + 1, *sep;
	size_t rest_len = size - 1;
	char *token;
	int rc;

	if (size == 0)
		return 0;
	if (!secrets[0].len) {
		make_secret(&secrets[0], 'a', TOKEN_SECRET_MIN);
		make_secret(&secrets[1], 'b', 64);
		make_secret(&foreign, 'c', TOKEN_SECRET_MIN);
	}
	if (!(data[0] & 1)) {
		token = strndup((const char *)rest, rest_len);
		CHECK(token != NULL);
		rc = token_verify(token, secrets, 2, NOW, &claims);
		if (rc == TOKEN_OK)
			check_accepted(&claims);
		else
			check_refused(rc, &claims);
		free(token);
		return 0;
	}

	sep = memchr(rest, '\0', rest_len);
	if (sep)
		token = sign(rest, (size_t)(sep - rest), sep + 1,
			     rest_len - (size_t)(sep - rest) - 1,
			     data[0] & 2 ? &foreign : &secrets[1]);
	else
		token = sign((const unsigned char *)standard_header,
			     sizeof(standard_header) - 1, rest, rest_len,
			     data[0] & 2 ? &foreign : &secrets[1]);
	rc = token_verify(token, secrets, 2, NOW, &claims);
	if (data[0] & 2) {
		CHECK(rc != TOKEN_OK && rc != TOKEN_E_CLAIMS &&
		      rc != TOKEN_E_EXPIRED && rc != TOKEN_E_NOTYET);
		check_refused(rc, &claims);
	} else if (rc == TOKEN_OK) {
		check_accepted(&claims);
	} else {
		check_refused(rc, &claims);
	}
	free(token);
	return 0;
}
