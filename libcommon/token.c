/*
 * token: HS256 JSON Web Tokens for the roles of docs/security.md, issued by
 * discoveryctl and verified by discoveryd. See token.h for the contract; this
 * file is base64url, the HMAC (OpenSSL's libcrypto), and the checks in the
 * order token_verify makes them: size, shape, header, signature, then claims.
 * Claims are parsed only once the signature holds, so an unauthenticated peer
 * reaches cJSON with a header of at most TOKEN_HEADER_MAX bytes.
 */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "proto.h"

#define MAC_LEN 32 /* SHA-256 */
/* JSON numbers are doubles: integers are exact up to 2^53. */
#define TIME_MAX 9007199254740992.0

static const char header_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* ---- base64url (RFC 4648 §5), no padding ----------------------------- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Room for the encoding of len bytes, without NUL. */
static size_t b64_encoded_len(size_t len)
{
	return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

/* Encode len bytes into out (b64_encoded_len(len) + 1 bytes, NUL added). */
static size_t b64_encode(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0, i = 0;

	for (; len - i >= 3; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];

		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = b64_alphabet[v >> 6 & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = b64_alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Decode len characters into out (cap bytes). Refuses anything but the
 * alphabet (so '=', '+', '/', blanks), a length of 4n+1, and non-zero
 * unused bits, so every byte string has exactly one accepted spelling.
 * Returns the decoded length, or -1.
 */
static long b64_decode(const char *in, size_t len, unsigned char *out,
		       size_t cap)
{
	size_t o = 0, i = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
		return -1;
	for (; i < len; i++) {
		int v = b64_value(in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)o;
}

/* ---- the pieces both directions share -------------------------------- */

static const char *const role_names[] = {
	[TOKEN_ROLE_NONE] = "",
	[TOKEN_ROLE_AGENT] = "agent",
	[TOKEN_ROLE_ADMIN] = "admin",
	[TOKEN_ROLE_READER] = "reader",
};

const char *token_role_name(enum token_role role)
{
	if ((unsigned)role >= sizeof(role_names) / sizeof(role_names[0]))
		return "";
	return role_names[role];
}

enum token_role token_role_parse(const char *name)
{
	if (!name)
		return TOKEN_ROLE_NONE;
	for (size_t i = TOKEN_ROLE_AGENT;
	     i < sizeof(role_names) / sizeof(role_names[0]); i++)
		if (strcmp(name, role_names[i]) == 0)
			return (enum token_role)i;
	return TOKEN_ROLE_NONE;
}

/* sub is logged: bounded, and nothing that could forge a log line. */
static bool valid_sub(const char *sub)
{
	size_t len = strnlen(sub, TOKEN_SUB_MAX + 1);

	if (len > TOKEN_SUB_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)sub[i] < 0x20 || sub[i] == 0x7f)
			return false;
	return true;
}

/* The rules token_issue and token_verify both apply to the claims. */
static bool valid_claims(const struct token_claims *c)
{
	if (c->role == TOKEN_ROLE_NONE || !token_role_name(c->role)[0])
		return false;
	if (c->svc[0] ? !proto_valid_name(c->svc) : c->role == TOKEN_ROLE_AGENT)
		return false;
	return valid_sub(c->sub) && c->exp > 0 && (double)c->exp < TIME_MAX;
}

static bool valid_secret(const struct token_secret *s)
{
	return s && s->len >= TOKEN_SECRET_MIN && s->len <= TOKEN_SECRET_MAX;
}

static int hmac_sha256(const struct token_secret *secret, const char *data,
		       size_t len, unsigned char mac[MAC_LEN])
{
	unsigned int mac_len = 0;

	if (!HMAC(EVP_sha256(), secret->key, (int)secret->len,
		  (const unsigned char *)data, len, mac, &mac_len) ||
	    mac_len != MAC_LEN)
		return TOKEN_E_CRYPTO;
	return TOKEN_OK;
}

/* ---- issuing --------------------------------------------------------- */

/* The claims as compact JSON, malloc'd; NULL when out of memory. */
static char *claims_json(const struct token_claims *c)
{
	cJSON *root = cJSON_CreateObject();
	char exp[24];
	char *text = NULL;

	snprintf(exp, sizeof(exp), "%lld", (long long)c->exp);
	if (root &&
	    cJSON_AddStringToObject(root, "role", token_role_name(c->role)) &&
	    (!c->svc[0] || cJSON_AddStringToObject(root, "svc", c->svc)) &&
	    (!c->sub[0] || cJSON_AddStringToObject(root, "sub", c->sub)) &&
	    cJSON_AddRawToObject(root, "exp", exp))
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

int token_issue(const struct token_claims *claims,
		const struct token_secret *secret, char *out, size_t outlen)
{
	char buf[TOKEN_MAX_LEN + 1];
	unsigned char mac[MAC_LEN];
	size_t len, payload_len;
	char *payload;
	int rc;

	if (out && outlen > 0)
		out[0] = '\0';
	if (!claims || !valid_secret(secret) || !out)
		return TOKEN_E_INVALID;
	if (!valid_claims(claims))
		return TOKEN_E_CLAIMS;
	payload = claims_json(claims);
	if (!payload)
		return TOKEN_E_NOMEM;
	payload_len = strlen(payload);
	len = b64_encoded_len(sizeof(header_json) - 1) + 1 +
	      b64_encoded_len(payload_len) + 1 + b64_encoded_len(MAC_LEN);
	/* Cannot happen with the claims' caps, but the caps may change. */
	if (len > TOKEN_MAX_LEN) {
		free(payload);
		return TOKEN_E_TOOBIG;
	}
	len = b64_encode((const unsigned char *)header_json,
			 sizeof(header_json) - 1, buf);
	buf[len++] = '.';
	len += b64_encode((const unsigned char *)payload, payload_len,
			  buf + len);
	free(payload);
	rc = hmac_sha256(secret, buf, len, mac);
	if (rc != TOKEN_OK)
		return rc;
	buf[len++] = '.';
	len += b64_encode(mac, MAC_LEN, buf + len);
	if (len >= outlen)
		return TOKEN_E_SPACE;
	memcpy(out, buf, len + 1);
	return TOKEN_OK;
}

/* ---- verifying ------------------------------------------------------- */

/*
 * Parse len bytes as one JSON object with nothing after it (but blanks),
 * at most TOKEN_DEPTH_MAX deep, at most TOKEN_KEYS_MAX members, no member
 * name twice. NULL when it is not (or when cJSON runs out of memory).
 */
static cJSON *parse_object(const char *text, size_t len)
{
	const char *end = NULL;
	const cJSON *a;
	cJSON *root;
	size_t keys = 0;

	/* cJSON would stop at a NUL and call the rest "the end". */
	if (memchr(text, '\0', len) ||
	    proto_json_depth(text, len, TOKEN_DEPTH_MAX) > TOKEN_DEPTH_MAX)
		return NULL;
	root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!root)
		return NULL;
	while (end < text + len &&
	       (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
		end++;
	if (end != text + len || !cJSON_IsObject(root))
		goto fail;
	for (a = root->child; a; a = a->next) {
		if (++keys > TOKEN_KEYS_MAX)
			goto fail;
		for (const cJSON *b = a->next; b; b = b->next)
			if (strcmp(a->string, b->string) == 0)
				goto fail;
	}
	return root;
fail:
	cJSON_Delete(root);
	return NULL;
}

/* Decode a base64url segment of JSON and parse it as parse_object does. */
static cJSON *decode_object(const char *seg, size_t len, char *buf, size_t cap)
{
	long n = b64_decode(seg, len, (unsigned char *)buf, cap);

	if (n < 0)
		return NULL;
	return parse_object(buf, (size_t)n);
}

static int check_header(const cJSON *header)
{
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(header, "alg");
	const cJSON *typ = cJSON_GetObjectItemCaseSensitive(header, "typ");

	if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256") != 0)
		return TOKEN_E_ALG;
	if (typ &&
	    (!cJSON_IsString(typ) || strcmp(typ->valuestring, "JWT") != 0))
		return TOKEN_E_ALG;
	if (cJSON_GetObjectItemCaseSensitive(header, "crit"))
		return TOKEN_E_ALG;
	return TOKEN_OK;
}

/* A NumericDate: an integer in [1, 2^53). */
static bool get_time(const cJSON *item, int64_t *out)
{
	double d;

	if (!cJSON_IsNumber(item))
		return false;
	d = item->valuedouble;
	if (!(d >= 1 && d < TIME_MAX) || (double)(int64_t)d != d)
		return false;
	*out = (int64_t)d;
	return true;
}

/* Copy a string claim into dst (cap bytes with NUL); absent gives "". */
static bool get_string(const cJSON *claims, const char *name, char *dst,
		       size_t cap)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(claims, name);
	size_t len;

	dst[0] = '\0';
	if (!item)
		return true;
	if (!cJSON_IsString(item))
		return false;
	len = strlen(item->valuestring);
	/* Empty is not absent: a token that says svc "" is not ours. */
	if (len == 0 || len >= cap)
		return false;
	memcpy(dst, item->valuestring, len + 1);
	return true;
}

static int read_claims(const cJSON *claims, int64_t now,
		       struct token_claims *out)
{
	const cJSON *role = cJSON_GetObjectItemCaseSensitive(claims, "role");
	const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(claims, "nbf");
	int64_t not_before = 0;

	if (!cJSON_IsString(role))
		return TOKEN_E_CLAIMS;
	out->role = token_role_parse(role->valuestring);
	if (!get_string(claims, "svc", out->svc, sizeof(out->svc)) ||
	    !get_string(claims, "sub", out->sub, sizeof(out->sub)) ||
	    !get_time(cJSON_GetObjectItemCaseSensitive(claims, "exp"),
		      &out->exp) ||
	    (nbf && !get_time(nbf, &not_before)) || !valid_claims(out))
		return TOKEN_E_CLAIMS;
	if (now >= out->exp + TOKEN_LEEWAY)
		return TOKEN_E_EXPIRED;
	if (nbf && now < not_before - TOKEN_LEEWAY)
		return TOKEN_E_NOTYET;
	return TOKEN_OK;
}

/* Does any secret sign data with mac? Every secret is tried, in the same
 * way, so the time taken says nothing about which one matched. */
static int check_signature(const char *data, size_t len,
			   const unsigned char mac[MAC_LEN],
			   const struct token_secret *secrets, size_t n)
{
	unsigned char expected[MAC_LEN];
	int match = 0;

	for (size_t i = 0; i < n; i++) {
		if (hmac_sha256(&secrets[i], data, len, expected) != TOKEN_OK)
			return TOKEN_E_CRYPTO;
		match |= CRYPTO_memcmp(expected, mac, MAC_LEN) == 0;
	}
	OPENSSL_cleanse(expected, sizeof(expected));
	return match ? TOKEN_OK : TOKEN_E_SIGNATURE;
}

static int verify(const char *token, size_t len,
		  const struct token_secret *secrets, size_t n_secrets,
		  int64_t now, struct token_claims *out)
{
	const char *end = token + len;
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 =
		dot1 ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
	char buf[TOKEN_MAX_LEN];
	unsigned char mac[MAC_LEN];
	cJSON *json;
	long n;
	int rc;

	/* Three non-empty segments, so exactly two dots. */
	if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) ||
	    dot1 == token || dot2 == dot1 + 1 || dot2 + 1 == end)
		return TOKEN_E_MALFORMED;

	json = decode_object(token, (size_t)(dot1 - token), buf,
			     TOKEN_HEADER_MAX);
	if (!json)
		return TOKEN_E_MALFORMED;
	rc = check_header(json);
	cJSON_Delete(json);
	if (rc != TOKEN_OK)
		return rc;

	n = b64_decode(dot2 + 1, (size_t)(end - dot2 - 1), (unsigned char *)buf,
		       sizeof(buf));
	if (n < 0)
		return TOKEN_E_MALFORMED;
	if (n != MAC_LEN)
		return TOKEN_E_SIGNATURE;
	memcpy(mac, buf, MAC_LEN);
	rc = check_signature(token, (size_t)(dot2 - token), mac, secrets,
			     n_secrets);
	if (rc != TOKEN_OK)
		return rc;

	json = decode_object(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf,
			     sizeof(buf));
	if (!json)
		return TOKEN_E_MALFORMED;
	rc = read_claims(json, now, out);
	cJSON_Delete(json);
	return rc;
}

int token_verify(const char *token, const struct token_secret *secrets,
		 size_t n_secrets, int64_t now, struct token_claims *out)
{
	size_t len;
	int rc;

	if (!out || !secrets || n_secrets == 0)
		return TOKEN_E_INVALID;
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n_secrets; i++)
		if (!valid_secret(&secrets[i]))
			return TOKEN_E_INVALID;
	if (!token || !token[0])
		return TOKEN_E_MISSING;
	len = strnlen(token, TOKEN_MAX_LEN + 1);
	if (len > TOKEN_MAX_LEN)
		return TOKEN_E_TOOBIG;
	rc = verify(token, len, secrets, n_secrets, now, out);
	if (rc != TOKEN_OK)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* ---- the secret file ------------------------------------------------- */

static int load_error(int code, char *err, size_t errlen, const char *path,
		      const char *reason)
{
	if (err && errlen > 0)
		snprintf(err, errlen, "%s: %s", path, reason);
	return code;
}

static int read_secret(int fd, const char *path, struct token_secret *secret,
		       char *err, size_t errlen)
{
	/* Room for the longest secret, a CRLF, and one byte to see more. */
	unsigned char buf[TOKEN_SECRET_MAX + 3];
	size_t len = 0;
	struct stat st;
	int rc = TOKEN_OK;

	if (fstat(fd, &st) != 0)
		return load_error(TOKEN_E_IO, err, errlen, path,
				  strerror(errno));
	if (!S_ISREG(st.st_mode))
		return load_error(TOKEN_E_SECRET, err, errlen, path,
				  "not a regular file");
	if (st.st_mode & (S_IRWXO | S_IWGRP))
		return load_error(TOKEN_E_SECRET, err, errlen, path,
				  "other users can read or change it "
				  "(chmod 600, or 640 for a group)");
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = load_error(TOKEN_E_IO, err, errlen, path,
					strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (len < TOKEN_SECRET_MIN || len > TOKEN_SECRET_MAX) {
		rc = load_error(TOKEN_E_SECRET, err, errlen, path,
				len < TOKEN_SECRET_MIN ?
					"the secret is under 32 bytes "
					"(make one with: openssl rand -hex "
					"32)" :
					"the secret is over 1024 bytes");
		goto out;
	}
	memcpy(secret->key, buf, len);
	secret->len = len;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

int token_load_secret(const char *path, struct token_secret *secret, char *err,
		      size_t errlen)
{
	int fd, rc;

	if (err && errlen > 0)
		err[0] = '\0';
	if (!secret || !path)
		return TOKEN_E_INVALID;
	token_secret_wipe(secret);
	/* O_NONBLOCK: a FIFO must not hang us; fstat then refuses it. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return load_error(TOKEN_E_IO, err, errlen, path,
				  strerror(errno));
	rc = read_secret(fd, path, secret, err, errlen);
	close(fd);
	return rc;
}

void token_secret_wipe(struct token_secret *secret)
{
	if (secret)
		OPENSSL_cleanse(secret, sizeof(*secret));
}

/* ---- errors ---------------------------------------------------------- */

const char *token_strerror(int err)
{
	switch (err) {
	case TOKEN_OK: return "success";
	case TOKEN_E_MISSING: return "no token";
	case TOKEN_E_TOOBIG: return "token too long";
	case TOKEN_E_MALFORMED: return "malformed token";
	case TOKEN_E_ALG: return "token algorithm is not HS256";
	case TOKEN_E_SIGNATURE: return "bad token signature";
	case TOKEN_E_EXPIRED: return "token expired";
	case TOKEN_E_NOTYET: return "token not yet valid";
	case TOKEN_E_CLAIMS: return "invalid token claims";
	case TOKEN_E_INVALID: return "invalid arguments or secret";
	case TOKEN_E_SPACE: return "token buffer too small";
	case TOKEN_E_NOMEM: return "out of memory";
	case TOKEN_E_CRYPTO: return "HMAC computation failed";
	case TOKEN_E_IO: return "cannot read the secret file";
	case TOKEN_E_SECRET: return "unusable secret file";
	default: return "unknown token error";
	}
}

int token_http_status(int err)
{
	switch (err) {
	case TOKEN_OK: return 200;
	case TOKEN_E_MISSING:
	case TOKEN_E_TOOBIG:
	case TOKEN_E_MALFORMED:
	case TOKEN_E_ALG:
	case TOKEN_E_SIGNATURE:
	case TOKEN_E_EXPIRED:
	case TOKEN_E_NOTYET:
	case TOKEN_E_CLAIMS: return 401;
	default: return 500;
	}
}
