/*
 * auth: who may do what (docs/security.md, "Tokens"). With `auth` configured,
 * every HTTP call but /healthz needs "Authorization: Bearer TOKEN": role admin
 * for writes, admin or reader for reads; an agent link needs an agent token
 * (which may register only as its svc) or an admin token, checked before the
 * WebSocket upgrade.
 *
 * Tokens are HS256 JWTs (libcommon/token.h). During a secret rotation the
 * daemon accepts tokens signed with auth.secret_file or with
 * auth.previous_secret_file. SIGHUP reloads both.
 *
 * Checked from the HTTP pool's threads and from the hub thread at once; the
 * secrets sit behind a read-write lock that only a reload takes for writing.
 *
 * Each secret loaded gets an id, kept by a reload that loads the same bytes
 * again: a link remembers the id of the secret its token was signed with,
 * and is closed when a reload drops that secret (auth_secret_kept).
 */
#ifndef DISCOVERYD_AUTH_H
#define DISCOVERYD_AUTH_H

#include <stdbool.h>

#include "dconf.h"
#include "token.h"

struct auth;

/* What a call needs. */
enum auth_need {
	AUTH_READ = 1, /* reader or admin */
	AUTH_WRITE,    /* admin */
	AUTH_LINK,     /* agent (its svc only) or admin (any service) */
};

/* The outcome of a check: status 0 (allowed), 401 or 403. */
struct auth_result {
	int status;
	const char *error; /* "unauthorized", "forbidden" */
	char message[128];
	struct token_claims claims; /* when allowed with a token */
	unsigned secret;            /* its secret's id (0: no token) */
};

/*
 * From conf (auth section): NULL with a message in err when a secret cannot
 * be read. With no auth configured, returns an auth that allows all.
 */
struct auth *auth_new(const struct dconf *conf, char *err, size_t errlen);
/* Load conf's secrets; on failure keep the old ones and say why. 0 or -1. */
int auth_reload(struct auth *a, const struct dconf *conf, char *err,
		size_t errlen);
void auth_free(struct auth *a);
bool auth_enabled(const struct auth *a);
/* Moves on with every reload that changed the secrets. */
unsigned auth_generation(const struct auth *a);
/* Whether the secret of this id (auth_result.secret) is still loaded. */
bool auth_secret_kept(struct auth *a, unsigned secret);

/*
 * Check a bearer token (the whole Authorization header value, or a bare
 * token from ?token=; NULL when none) for need.
 */
void auth_check(struct auth *a, const char *authorization, bool bare,
		enum auth_need need, struct auth_result *out);

#endif
