/*
 * webhook_sign: the Standard Webhooks signature (docs/webhooks.md). A
 * secret is "whsec_" then base64; its decoded bytes are the HMAC-SHA256 key.
 * A request is signed over "id.timestamp.body", and the header carries one
 * "v1,<base64>" per key, separated by spaces, so a receiver that knows any
 * of them (a rotation) accepts it. No state, no I/O: unit-tested against
 * the specification's vector (tests/unit/test_d_webhook_sign.c).
 */
#ifndef DISCOVERYD_WEBHOOK_SIGN_H
#define DISCOVERYD_WEBHOOK_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "dconf.h"

/* One "v1,<44 base64 characters>" and its separator. */
#define WEBHOOK_SIG_ONE 48
#define WEBHOOK_SIG_MAX (DCONF_WEBHOOK_SECRETS_MAX * WEBHOOK_SIG_ONE)

/*
 * Decode "whsec_<base64>" (the prefix may be left out, as Svix's libraries
 * allow) into key. 0; -1 when it is not base64; -2 when it decodes to
 * fewer than DCONF_WEBHOOK_KEY_MIN or more than DCONF_WEBHOOK_KEY_MAX bytes.
 */
int webhook_key_decode(const char *text, struct dconf_webhook_key *key);

/*
 * The webhook-signature header's value for these n keys into out (at
 * least WEBHOOK_SIG_MAX bytes). 0, or -1 (libcrypto failed).
 */
int webhook_sign(const struct dconf_webhook_key *keys, size_t n, const char *id,
		 int64_t timestamp, const void *body, size_t len, char *out,
		 size_t outlen);

#endif
