/*
 * webhook_sign: Standard Webhooks secrets and signatures (webhook_sign.h),
 * on libcrypto's HMAC and base64.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "webhook_sign.h"

#define PREFIX "whsec_"

static bool is_b64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int webhook_key_decode(const char *text, struct dconf_webhook_key *key)
{
	/* The longest key, in base64, and the decoder's slack. */
	unsigned char buf[(DCONF_WEBHOOK_KEY_MAX + 2) / 3 * 3 + 3];
	size_t n, pad = 0;
	int got;

	if (strncmp(text, PREFIX, strlen(PREFIX)) == 0)
		text += strlen(PREFIX);
	n = strlen(text);
	if (n == 0 || n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (text[i] == '=' && i >= n - 2) {
			pad++;
			continue;
		}
		if (pad || !is_b64(text[i]))
			return -1;
	}
	if (n / 4 * 3 > sizeof(buf))
		return -2;
	got = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)n);
	if (got < 0)
		return -1;
	got -= (int)pad;
	if (got < DCONF_WEBHOOK_KEY_MIN || got > DCONF_WEBHOOK_KEY_MAX) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return -2;
	}
	memcpy(key->bytes, buf, (size_t)got);
	key->len = (size_t)got;
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

/* HMAC-SHA256 of head then body with key into mac (32 bytes). */
static int hmac(EVP_MAC *m, const struct dconf_webhook_key *key,
		const char *head, size_t head_len, const void *body, size_t len,
		unsigned char *mac, size_t *mac_len)
{
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(m);
	OSSL_PARAM params[2];
	int ok;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	ok = ctx && EVP_MAC_init(ctx, key->bytes, key->len, params) &&
	     EVP_MAC_update(ctx, (const unsigned char *)head, head_len) &&
	     EVP_MAC_update(ctx, body, len) &&
	     EVP_MAC_final(ctx, mac, mac_len, EVP_MAX_MD_SIZE);
	EVP_MAC_CTX_free(ctx);
	return ok ? 0 : -1;
}

int webhook_sign(const struct dconf_webhook_key *keys, size_t n, const char *id,
		 int64_t timestamp, const void *body, size_t len, char *out,
		 size_t outlen)
{
	char head[160];
	int head_len = snprintf(head, sizeof(head), "%s.%lld.", id,
				(long long)timestamp);
	EVP_MAC *m;
	size_t used = 0;
	int rc = 0;

	if (head_len < 0 || (size_t)head_len >= sizeof(head) ||
	    outlen < n * WEBHOOK_SIG_ONE + 1)
		return -1;
	m = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	if (!m)
		return -1;
	out[0] = '\0';
	for (size_t i = 0; i < n && rc == 0; i++) {
		unsigned char mac[EVP_MAX_MD_SIZE];
		size_t mac_len = 0;

		rc = hmac(m, &keys[i], head, (size_t)head_len, body, len, mac,
			  &mac_len);
		if (rc != 0)
			break;
		used += (size_t)snprintf(out + used, outlen - used, "%sv1,",
					 i ? " " : "");
		/* EVP_EncodeBlock writes the NUL after the text. */
		used += (size_t)EVP_EncodeBlock((unsigned char *)out + used,
						mac, (int)mac_len);
	}
	EVP_MAC_free(m);
	return rc;
}
