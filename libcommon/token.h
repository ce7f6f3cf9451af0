/*
 * token: the bearer tokens of docs/security.md, HS256 JSON Web Tokens (RFC
 * 7519) signed with the shared secret of `auth.secret_file`.
 *
 *   header   {"alg":"HS256","typ":"JWT"}
 *   claims   role  "agent" | "admin" | "reader"       required
 *            svc   the service an agent may register as  required for agent
 *            sub   free text naming the holder, logged   optional
 *            exp   seconds since the epoch               required
 *            nbf   honoured when present; other claims are ignored
 *   An empty svc or sub is refused, not read as absent: we never issue one.
 *
 * The daemon verifies (token_verify) and discoveryctl issues (token_issue);
 * both read the secret with token_load_secret, so they agree on its bytes.
 *
 * Verification is strict, because it runs on text from anyone who can reach
 * a listener: the token is capped at TOKEN_MAX_LEN before anything else;
 * it must be exactly three base64url segments (RFC 4648 §5, no padding,
 * canonical: unused trailing bits zero, so a signature has one spelling);
 * the header must say alg "HS256" (never "none", never another algorithm,
 * whatever the key) and, when typ is present, typ "JWT"; the signature is
 * checked, with CRYPTO_memcmp, before the claims are parsed at all; both
 * JSON documents are capped in depth and key count, must be objects and
 * may not repeat a key (two "role" members would mean whatever the parser
 * picks). Unknown claims and header fields are ignored, except "crit",
 * which names extensions we do not implement and so is refused.
 *
 * Secret rotation: token_verify takes a list of secrets and accepts a
 * token that any of them signed; the daemon passes the new and the old
 * secret during a rotation window, and token_issue always signs with one.
 *
 * The role and service are checked for form only. Whether a role may make
 * a call, or an agent may register as a service, is the caller's decision
 * (HTTP 403); every TOKEN_E_* from token_verify means the token itself is
 * not acceptable (HTTP 401), see token_http_status.
 *
 * No function here keeps state, prints or allocates anything the caller
 * must free; all are safe to call from any thread.
 */
#ifndef DISCOVERY_TOKEN_H
#define DISCOVERY_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps, in one place. A valid token is a few hundred bytes. */
#define TOKEN_MAX_LEN    4096 /* whole token text, bytes (without NUL) */
#define TOKEN_HEADER_MAX 512  /* decoded header JSON, bytes */
#define TOKEN_DEPTH_MAX  4    /* JSON nesting of header and claims */
#define TOKEN_KEYS_MAX   32   /* members of the header or claims object */
#define TOKEN_SVC_MAX    63   /* as service names: [a-z0-9][a-z0-9_.-]{0,62} */
#define TOKEN_SUB_MAX    127  /* bytes of sub; no control characters */
#define TOKEN_SECRET_MIN 32   /* HS256 wants a key of at least 256 bits */
#define TOKEN_SECRET_MAX 1024
/*
 * Clock skew allowed between the issuer and the verifier, seconds: a token
 * is accepted until exp + TOKEN_LEEWAY (and from nbf - TOKEN_LEEWAY when it
 * has an nbf). One minute covers NTP-synchronised hosts with room to spare.
 */
#define TOKEN_LEEWAY 60

/* Error codes (negative). token_http_status maps them to HTTP. */
enum {
	TOKEN_OK = 0,
	TOKEN_E_MISSING = -1,   /* no token, or an empty one */
	TOKEN_E_TOOBIG = -2,    /* over TOKEN_MAX_LEN */
	TOKEN_E_MALFORMED = -3, /* not three base64url segments of JSON
				   objects, too deep, repeated keys, ... */
	TOKEN_E_ALG = -4,       /* header alg is not HS256, typ is not JWT,
				   or it has crit */
	TOKEN_E_SIGNATURE = -5, /* no given secret made this signature */
	TOKEN_E_EXPIRED = -6,   /* now >= exp + TOKEN_LEEWAY */
	TOKEN_E_NOTYET = -7,    /* now < nbf - TOKEN_LEEWAY */
	TOKEN_E_CLAIMS = -8,    /* signed, but a claim is missing or wrong:
				   role, svc, sub or exp */
	TOKEN_E_INVALID = -9,   /* bad arguments (no secrets, a secret under
				   TOKEN_SECRET_MIN, NULL pointers) */
	TOKEN_E_SPACE = -10,    /* token_issue: output buffer too small */
	TOKEN_E_NOMEM = -11,
	TOKEN_E_CRYPTO = -12, /* OpenSSL failed to compute the HMAC */
	TOKEN_E_IO = -13,     /* token_load_secret: cannot open or read */
	TOKEN_E_SECRET = -14, /* token_load_secret: not a regular file,
				 unsafe mode, too short or too long */
};

enum token_role {
	TOKEN_ROLE_NONE = 0,
	TOKEN_ROLE_AGENT,  /* may open an agent link, as its svc only */
	TOKEN_ROLE_ADMIN,  /* HTTP API: read and write */
	TOKEN_ROLE_READER, /* HTTP API: GET, /metrics */
};

struct token_claims {
	enum token_role role;
	char svc[TOKEN_SVC_MAX + 1]; /* "" when absent */
	char sub[TOKEN_SUB_MAX + 1]; /* "" when absent */
	int64_t exp;                 /* seconds since the epoch; required */
};

/* A secret's bytes, held inline: the struct owns no pointer. */
struct token_secret {
	unsigned char key[TOKEN_SECRET_MAX];
	size_t len;
};

/*
 * Sign claims with secret into out as a NUL-terminated token. The claims
 * are checked as token_verify checks them (a known role, svc required for
 * agent and well-formed when given, sub printable, exp > 0), so whatever
 * is issued verifies. A buffer of TOKEN_MAX_LEN + 1 bytes is always
 * enough. The output is deterministic: the same claims and secret give the
 * same bytes (members in the order role, svc, sub, exp; absent ones left
 * out). Returns 0 or TOKEN_E_CLAIMS, TOKEN_E_INVALID, TOKEN_E_SPACE,
 * TOKEN_E_NOMEM, TOKEN_E_CRYPTO; on failure out is "" (when outlen > 0).
 */
int token_issue(const struct token_claims *claims,
		const struct token_secret *secret, char *out, size_t outlen);

/*
 * Verify token (NUL-terminated; NULL counts as missing) against
 * n_secrets secrets at time now (seconds since the epoch). Accepts when any
 * secret verifies the signature. On success fills *out and returns 0; on
 * failure returns a TOKEN_E_* code and *out is zeroed. Every secret given
 * must be at least TOKEN_SECRET_MIN bytes (else TOKEN_E_INVALID).
 */
int token_verify(const char *token, const struct token_secret *secrets,
		 size_t n_secrets, int64_t now, struct token_claims *out);

/*
 * Read a secret file into *secret: its raw bytes, with trailing CR and LF
 * removed (an editor's or `echo`'s newline must not become key material;
 * for that reason a binary secret should not end in 0x0a or 0x0d; make one
 * with `openssl rand -hex 32 > FILE`). After stripping it must hold
 * TOKEN_SECRET_MIN to TOKEN_SECRET_MAX bytes.
 *
 * The file must be a regular file (symlinks to one are followed) with no
 * permission bits for others and no group write: 0600, 0400, 0640 and
 * 0440 are accepted, so that `root:discovery 0640` works; 0644 is refused
 * as OpenSSH refuses a readable private key: anyone who can read it can
 * mint admin tokens.
 *
 * Returns 0, or TOKEN_E_IO / TOKEN_E_SECRET with a one-line reason naming
 * path in err. On failure *secret is zeroed.
 */
int token_load_secret(const char *path, struct token_secret *secret, char *err,
		      size_t errlen);

/* Overwrite a secret's bytes (OPENSSL_cleanse: not optimised away). */
void token_secret_wipe(struct token_secret *secret);

/* "agent", "admin", "reader"; "" for TOKEN_ROLE_NONE or out of range. */
const char *token_role_name(enum token_role role);
/* The role named by name (exact, lower case); TOKEN_ROLE_NONE if none. */
enum token_role token_role_parse(const char *name);

/* A static English phrase for a TOKEN_E_* code ("token expired"). */
const char *token_strerror(int err);

/*
 * The HTTP status for a token_verify error: 401 for every error about the
 * token (missing, malformed, wrong algorithm, bad signature, expired, bad
 * claims), 500 for TOKEN_E_NOMEM / TOKEN_E_CRYPTO / TOKEN_E_INVALID (our
 * fault, not the client's), 200 for TOKEN_OK. 403 is never returned here:
 * a valid token without the right role or service is the caller's call.
 */
int token_http_status(int err);

#endif
