/*
 * issue: `discoveryctl token issue`. See issue.h.
 *
 * Every argument is checked before the secret file is opened, the way the
 * other commands check everything before a request is sent; the secret is
 * wiped from memory as soon as the token is signed. The global options
 * (--server, --token, --timeout, --json) do not apply and are ignored, so
 * that $DISCOVERY_ADDR or an alias with -s does not get in the way.
 */
#include "issue.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "token.h"
#include "util.h"

/* The role, service and subject, checked; exits 2 when they are wrong. */
static void checked_claims(const struct cmd_args *args,
			   struct token_claims *claims)
{
	if (!args->role)
		util_usage_error("token issue needs --role agent, admin or "
				 "reader");
	claims->role = token_role_parse(args->role);
	if (claims->role == TOKEN_ROLE_NONE)
		util_usage_error("--role '%s' is not agent, admin or reader",
				 args->role);
	if (claims->role == TOKEN_ROLE_AGENT && !args->service)
		util_usage_error("an agent token needs --service: the one "
				 "service it may register as");
	if (claims->role != TOKEN_ROLE_AGENT && args->service)
		util_usage_error("--service is for agent tokens only; an %s "
				 "token covers every service",
				 args->role);
	if (args->service) {
		if (!cmd_valid_service(args->service))
			util_usage_error("--service '%s' is not a service "
					 "name: 1 to 63 of a-z, 0-9, '_', "
					 "'.', '-', starting with a letter "
					 "or digit",
					 args->service);
		snprintf(claims->svc, sizeof(claims->svc), "%s", args->service);
	}
	if (args->sub) {
		if (strlen(args->sub) > TOKEN_SUB_MAX ||
		    util_has_control(args->sub))
			util_usage_error("--sub must be at most %d printable "
					 "bytes",
					 TOKEN_SUB_MAX);
		snprintf(claims->sub, sizeof(claims->sub), "%s", args->sub);
	}
}

/* exp from --ttl: now plus the duration, rounded up to a whole second. */
static int64_t checked_expiry(const char *ttl_text)
{
	const char *text = ttl_text ? ttl_text : ISSUE_DEFAULT_TTL;
	int64_t ttl_ms;

	if (conf_parse_duration(text, &ttl_ms) != 0 || ttl_ms <= 0 ||
	    ttl_ms / 1000 > ISSUE_MAX_TTL_S)
		util_usage_error("--ttl '%s' is not a duration from 1ms to "
				 "%lldh, such as 30m, 24h or 720h",
				 text, ISSUE_MAX_TTL_S / 3600);
	return (int64_t)time(NULL) + (ttl_ms + 999) / 1000;
}

int issue_run(const struct cmd_args *args)
{
	struct token_claims claims = { 0 };
	struct token_secret secret;
	char token[TOKEN_MAX_LEN + 1];
	char err[CTL_ERR_SIZE];
	int rc;

	if (strcmp(args->positional[0], "issue") != 0)
		util_usage_error("unknown command 'token %s'; there is "
				 "'token issue'",
				 args->positional[0]);
	checked_claims(args, &claims);
	claims.exp = checked_expiry(args->ttl);
	if (!args->secret_file)
		util_usage_error("token issue needs --secret-file FILE (the "
				 "daemon's auth.secret_file)");

	rc = token_load_secret(args->secret_file, &secret, err, sizeof(err));
	if (rc != TOKEN_OK) {
		fprintf(stderr, CTL_PROG ": %s\n", err);
		return CTL_EXIT_REFUSED;
	}
	rc = token_issue(&claims, &secret, token, sizeof(token));
	token_secret_wipe(&secret);
	if (rc != TOKEN_OK) {
		fprintf(stderr, CTL_PROG ": cannot issue the token: %s\n",
			token_strerror(rc));
		return CTL_EXIT_REFUSED;
	}
	printf("%s\n", token);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, CTL_PROG ": cannot write the token\n");
		return CTL_EXIT_REFUSED;
	}
	return CTL_EXIT_OK;
}
