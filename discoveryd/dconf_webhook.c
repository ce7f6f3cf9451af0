/*
 * dconf_webhook: the rows of one webhooks: entry and the checks on it
 * (docs/webhooks.md). A check names the key it refuses, so `discoveryd -t`
 * says which entry and field is wrong. Secrets are read here, at load, like
 * the TLS files: a reload reads them again, and -t proves they are usable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "dconf.h"
#include "event.h"
#include "proto.h"
#include "webhook_sign.h"

#define W(field)        offsetof(struct dconf_webhook, field)
#define HOUR_MS         (INT64_C(3600) * 1000)
#define SECRET_FILE_MAX 4096 /* a few whsec_ lines */

/* clang-format off */
static const struct conf_key filter_keys[] = {
	{ .name = "kinds", .type = CONF_STRLIST, .offset = W(kinds), .max = 8,
	  .help = "readiness, invalidate, command; none = all" },
	{ .name = "services", .type = CONF_STRLIST, .offset = W(services),
	  .max = 1024, .help = "services; none = all" },
	{ .name = NULL },
};

static const struct conf_key retry_keys[] = {
	{ .name = "initial", .type = CONF_DURATION, .offset = W(retry_initial_ms),
	  .min = 10, .max = HOUR_MS, .def = "1s" },
	{ .name = "max", .type = CONF_DURATION, .offset = W(retry_max_ms),
	  .min = 10, .max = 24 * HOUR_MS, .def = "5m" },
	{ .name = "max_age", .type = CONF_DURATION, .offset = W(retry_max_age_ms),
	  .min = 100, .max = 30 * 24 * HOUR_MS, .def = "24h" },
	{ .name = NULL },
};

const struct conf_key dconf_webhook_keys[] = {
	{ .name = "url", .type = CONF_STRING, .offset = W(url),
	  .flags = CONF_REQUIRED },
	{ .name = "ca_file", .type = CONF_STRING, .offset = W(ca_file) },
	{ .name = "secret_file", .type = CONF_STRING, .offset = W(secret_file),
	  .flags = CONF_REQUIRED },
	{ .name = "filter", .type = CONF_SECTION, .sub = filter_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "timeout", .type = CONF_DURATION, .offset = W(timeout_ms),
	  .min = 100, .max = 5 * 60 * 1000, .def = "15s" },
	{ .name = "retry", .type = CONF_SECTION, .sub = retry_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "max_in_flight", .type = CONF_INT, .offset = W(max_in_flight),
	  .min = 1, .max = 64, .def = "1" },
	{ .name = NULL },
};
/* clang-format on */

/* http or https, with a host: libcurl's own parser, the one that sends. */
static int check_url(const char *url, char *why, size_t whylen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	CURLUcode rc;
	int ret = -1;

	if (!u) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
		snprintf(why, whylen, "not a URL (%s)", curl_url_strerror(rc));
	else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		 (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		snprintf(why, whylen,
			 "unsupported scheme '%s' (http or https only)",
			 scheme ? scheme : "");
	else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
		 !*host)
		snprintf(why, whylen, "has no host");
	else
		ret = 0;
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ret;
}

static int check_filter(struct dconf_webhook *w, char *why, size_t whylen)
{
	for (size_t i = 0; i < w->kinds.n; i++) {
		enum event_kind k = event_kind_parse(w->kinds.v[i]);

		if (!k || k > EVENT_COMMAND) {
			snprintf(why, whylen,
				 "filter.kinds: '%s' is not readiness, "
				 "invalidate or command",
				 w->kinds.v[i]);
			return -1;
		}
		w->kinds_mask |= 1u << k;
	}
	for (size_t i = 0; i < w->services.n; i++)
		if (!proto_valid_name(w->services.v[i])) {
			snprintf(why, whylen,
				 "filter.services: '%s' is not a service name",
				 w->services.v[i]);
			return -1;
		}
	return 0;
}

/* Read the secrets: one whsec_ per line, the file private to its owner. */
static int read_secrets(struct dconf_webhook *w, char *why, size_t whylen)
{
	char buf[SECRET_FILE_MAX + 1], *line, *save = NULL;
	struct stat st;
	ssize_t n;
	/* A symlink is followed (Kubernetes mounts secrets so): the mode
	 * checked below is its target's. */
	int fd = open(w->secret_file, O_RDONLY | O_CLOEXEC);
	int ret = -1;

	if (fd < 0) {
		snprintf(why, whylen, "secret_file: cannot read %s: %s",
			 w->secret_file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "secret_file: %s is not a file",
			 w->secret_file);
		goto out;
	}
	if (st.st_mode & 077) {
		snprintf(why, whylen,
			 "secret_file: %s is readable or writable by group or "
			 "others (chmod 600 it)",
			 w->secret_file);
		goto out;
	}
	n = read(fd, buf, SECRET_FILE_MAX + 1);
	if (n < 0 || n > SECRET_FILE_MAX) {
		snprintf(why, whylen, "secret_file: %s: %s", w->secret_file,
			 n < 0 ? strerror(errno) : "larger than 4096 bytes");
		goto out;
	}
	buf[n] = '\0';
	for (line = strtok_r(buf, "\r\n", &save); line;
	     line = strtok_r(NULL, "\r\n", &save)) {
		int rc;

		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line || *line == '#')
			continue;
		if (w->n_keys == DCONF_WEBHOOK_SECRETS_MAX) {
			snprintf(why, whylen,
				 "secret_file: more than %d secrets",
				 DCONF_WEBHOOK_SECRETS_MAX);
			goto out;
		}
		rc = webhook_key_decode(line, &w->keys[w->n_keys]);
		if (rc != 0) {
			snprintf(why, whylen,
				 rc == -2 ? "secret_file: a secret must decode "
					    "to %d to %d bytes (too short or "
					    "too long)" :
					    "secret_file: a secret is whsec_ "
					    "then base64 (%d to %d bytes)",
				 DCONF_WEBHOOK_KEY_MIN, DCONF_WEBHOOK_KEY_MAX);
			goto out;
		}
		w->n_keys++;
	}
	if (w->n_keys == 0)
		snprintf(why, whylen, "secret_file: %s holds no secret",
			 w->secret_file);
	else
		ret = 0;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return ret;
}

static int check_one(struct dconf_webhook *w, char *why, size_t whylen)
{
	char what[200];

	if (check_url(w->url, what, sizeof(what)) != 0) {
		/* Not the URL itself: it may hold a credential. */
		snprintf(why, whylen, "url: %s", what);
		return -1;
	}
	if (w->ca_file && access(w->ca_file, R_OK) != 0) {
		snprintf(why, whylen, "ca_file: cannot read %s: %s", w->ca_file,
			 strerror(errno));
		return -1;
	}
	if (w->retry_max_ms < w->retry_initial_ms) {
		snprintf(why, whylen,
			 "retry.max must be at least retry.initial");
		return -1;
	}
	if (check_filter(w, why, whylen) != 0)
		return -1;
	return read_secrets(w, why, whylen);
}

int dconf_webhooks_validate(const char *path, struct dconf *c, char *err,
			    size_t errlen)
{
	struct dconf_webhook *items = c->webhooks.items;
	char why[512];

	if (c->webhooks.n > DCONF_WEBHOOKS_MAX) {
		snprintf(err, errlen, "%s: webhooks: more than %d endpoints",
			 path, DCONF_WEBHOOKS_MAX);
		return -1;
	}
	for (size_t i = 0; i < c->webhooks.n; i++)
		if (check_one(&items[i], why, sizeof(why)) != 0) {
			snprintf(err, errlen, "%s: webhooks.%s.%s", path,
				 c->webhooks.names[i], why);
			return -1;
		}
	return 0;
}

void dconf_webhooks_wipe(struct dconf *c)
{
	struct dconf_webhook *items = c->webhooks.items;

	for (size_t i = 0; i < c->webhooks.n && items; i++)
		OPENSSL_cleanse(items[i].keys, sizeof(items[i].keys));
}

int dconf_webhook_parse(const char *text, size_t len, const char *origin,
			const char *name, struct dconf_webhook *w, char *err,
			size_t errlen)
{
	char why[512];

	memset(w, 0, sizeof(*w));
	/* JSON is YAML's flow style: the rows and their messages are the
	 * config file's own, with the position in text. */
	if (conf_load_string(text, len, origin, dconf_webhook_keys, w, err,
			     errlen) != 0)
		return -1;
	if (check_one(w, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "webhooks.%s.%s", name, why);
		return -2;
	}
	return 0;
}

void dconf_webhook_release(struct dconf_webhook *w)
{
	OPENSSL_cleanse(w->keys, sizeof(w->keys));
	conf_release(dconf_webhook_keys, w);
}
