/*
 * auth: bearer tokens against the configured secrets, and the roles'
 * rights (see auth.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"

struct auth {
	bool enabled;
	pthread_rwlock_t lock;
	struct token_secret secrets[2]; /* current, previous */
	unsigned ids[2];                /* theirs (auth_result.secret) */
	size_t n_secrets;
	unsigned last_id;
	atomic_uint generation;
};

/*
 * Give each of fresh an id: the id of the same secret among the loaded
 * ones, else a new one. Returns whether the set of secrets changed.
 */
static bool assign_ids(struct auth *a, const struct token_secret *fresh,
		       size_t n, unsigned *ids)
{
	bool changed = n != a->n_secrets;

	for (size_t i = 0; i < n; i++) {
		ids[i] = 0;
		for (size_t j = 0; j < a->n_secrets && !ids[i]; j++)
			if (fresh[i].len == a->secrets[j].len &&
			    memcmp(fresh[i].key, a->secrets[j].key,
				   fresh[i].len) == 0)
				ids[i] = a->ids[j];
		if (!ids[i]) {
			ids[i] = ++a->last_id;
			changed = true;
		}
	}
	return changed;
}

static int load(const struct dconf *conf, struct token_secret *secrets,
		size_t *n, char *err, size_t errlen)
{
	*n = 0;
	if (token_load_secret(conf->auth_secret_file, &secrets[0], err,
			      errlen) != 0)
		return -1;
	*n = 1;
	if (conf->auth_previous_secret_file) {
		if (token_load_secret(conf->auth_previous_secret_file,
				      &secrets[1], err, errlen) != 0) {
			token_secret_wipe(&secrets[0]);
			*n = 0;
			return -1;
		}
		*n = 2;
	}
	return 0;
}

struct auth *auth_new(const struct dconf *conf, char *err, size_t errlen)
{
	struct auth *a = calloc(1, sizeof(*a));

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_rwlock_init(&a->lock, NULL);
	a->enabled = conf->auth_present;
	if (a->enabled && load(conf, a->secrets, &a->n_secrets, err, errlen)) {
		auth_free(a);
		return NULL;
	}
	for (size_t i = 0; i < a->n_secrets; i++)
		a->ids[i] = ++a->last_id;
	return a;
}

int auth_reload(struct auth *a, const struct dconf *conf, char *err,
		size_t errlen)
{
	struct token_secret fresh[2];
	unsigned ids[2];
	size_t n;

	if (!a->enabled || !conf->auth_present)
		return 0; /* turning auth on or off needs a restart */
	if (load(conf, fresh, &n, err, errlen) != 0)
		return -1;
	pthread_rwlock_wrlock(&a->lock);
	if (assign_ids(a, fresh, n, ids))
		atomic_fetch_add(&a->generation, 1);
	memcpy(a->secrets, fresh, sizeof(fresh));
	memcpy(a->ids, ids, sizeof(ids));
	a->n_secrets = n;
	pthread_rwlock_unlock(&a->lock);
	token_secret_wipe(&fresh[0]);
	token_secret_wipe(&fresh[1]);
	return 0;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	token_secret_wipe(&a->secrets[0]);
	token_secret_wipe(&a->secrets[1]);
	pthread_rwlock_destroy(&a->lock);
	free(a);
}

bool auth_enabled(const struct auth *a)
{
	return a->enabled;
}

unsigned auth_generation(const struct auth *a)
{
	return atomic_load(&a->generation);
}

bool auth_secret_kept(struct auth *a, unsigned secret)
{
	bool kept = false;

	pthread_rwlock_rdlock(&a->lock);
	for (size_t i = 0; i < a->n_secrets; i++)
		kept = kept || a->ids[i] == secret;
	pthread_rwlock_unlock(&a->lock);
	return kept;
}

/*
 * The token against each secret in turn, so that the one that signed it
 * is known: the first answer that is not "another secret signed this"
 * settles it (an expired token is refused as expired, whichever secret).
 */
static int verify(struct auth *a, const char *token, struct auth_result *out)
{
	int rc = TOKEN_E_SIGNATURE;

	pthread_rwlock_rdlock(&a->lock);
	for (size_t i = 0; i < a->n_secrets && rc == TOKEN_E_SIGNATURE; i++) {
		rc = token_verify(token, &a->secrets[i], 1, (int64_t)time(NULL),
				  &out->claims);
		if (rc == TOKEN_OK)
			out->secret = a->ids[i];
	}
	pthread_rwlock_unlock(&a->lock);
	return rc;
}

static void deny(struct auth_result *out, int status, const char *message)
{
	out->status = status;
	out->error = status == 401 ? "unauthorized" : "forbidden";
	snprintf(out->message, sizeof(out->message), "%s", message);
}

static bool allowed(enum token_role role, enum auth_need need)
{
	switch (need) {
	case AUTH_READ:
		return role == TOKEN_ROLE_ADMIN || role == TOKEN_ROLE_READER;
	case AUTH_WRITE: return role == TOKEN_ROLE_ADMIN;
	case AUTH_LINK:
		return role == TOKEN_ROLE_ADMIN || role == TOKEN_ROLE_AGENT;
	}
	return false;
}

void auth_check(struct auth *a, const char *authorization, bool bare,
		enum auth_need need, struct auth_result *out)
{
	const char *token = authorization;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!a->enabled)
		return;
	if (token && !bare) {
		/* RFC 6750: "Bearer" is case-insensitive, then one space. */
		if (strncasecmp(token, "Bearer ", 7) != 0) {
			deny(out, 401, "use Authorization: Bearer TOKEN");
			return;
		}
		token += 7;
	}
	rc = verify(a, token, out);
	if (rc != TOKEN_OK) {
		deny(out, token_http_status(rc) == 401 ? 401 : 500,
		     token_strerror(rc));
		if (out->status == 500)
			out->error = "internal";
		return;
	}
	if (!allowed(out->claims.role, need)) {
		char why[128];

		const char *role = token_role_name(out->claims.role);

		snprintf(why, sizeof(why), "%s %s token cannot %s",
			 role[0] == 'a' ? "an" : "a", role,
			 need == AUTH_WRITE ? "change anything" :
			 need == AUTH_LINK  ? "link as an agent" :
					      "read");
		deny(out, 403, why);
	}
}
