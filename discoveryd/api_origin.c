/*
 * api_origin: the HTTP API refuses what a browser marks as foreign, before
 * any route runs, so that a web page open on the operator's machine can
 * neither change readiness (CSRF: a form, an <img>, a text/plain fetch)
 * nor read the API through a DNS name it points at 127.0.0.1 (rebinding).
 *
 *   Host            must name this daemon: an IP address (a rebinding page
 *                   is reached by name, never by address), localhost or a
 *                   name under .localhost, listen.http's host, or one of
 *                   allowed_hosts ("*" turns the check off). Else 421.
 *   Origin          when present, scheme://HOST with HOST exactly the
 *                   request's Host ("null" is foreign). Else 403.
 *   Sec-Fetch-Site  cross-site or same-site (another port of localhost is
 *                   same-site) is 403.
 *   Referer         when present, its scheme://authority must be the
 *                   request's Host too. Else 403.
 *
 * Scripts, curl and discoveryctl send none of the last three, and keep
 * working. The one exemption is a GET or HEAD of the dashboard page (/)
 * itself, which changes nothing: a link to it from a wiki is a
 * cross-site navigation. The dashboard's own calls are same-origin.
 *
 * The allowed names change on SIGHUP while the pool's threads read them:
 * they sit behind a read-write lock that only a reload takes for writing.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_int.h"

#define HOST_MAX 255 /* a DNS name, in Host or allowed_hosts */

struct api_origin {
	pthread_rwlock_t lock;
	char **names; /* listen.http's host, allowed_hosts */
	size_t n;
	bool any; /* allowed_hosts holds "*" */
};

/* ---- the allowed names ------------------------------------------------ */

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int take_names(struct api_origin *o, const struct dconf *conf)
{
	const struct conf_strlist *l = &conf->allowed_hosts;
	char **names = calloc(l->n + 1, sizeof(*names));
	size_t n = 0;
	bool any = false;

	if (!names)
		return -1;
	if (conf->listen_http.host[0] &&
	    !(names[n++] = strdup(conf->listen_http.host)))
		goto fail;
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i], "*") == 0)
			any = true;
		else if (!(names[n++] = strdup(l->v[i])))
			goto fail;
	}
	pthread_rwlock_wrlock(&o->lock);
	free_names(o->names, o->n);
	o->names = names;
	o->n = n;
	o->any = any;
	pthread_rwlock_unlock(&o->lock);
	return 0;
fail:
	free_names(names, n);
	return -1;
}

struct api_origin *api_origin_new(const struct dconf *conf)
{
	struct api_origin *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	pthread_rwlock_init(&o->lock, NULL);
	if (take_names(o, conf) != 0) {
		api_origin_free(o);
		return NULL;
	}
	return o;
}

int api_origin_reload(struct api_origin *o, const struct dconf *conf)
{
	return take_names(o, conf);
}

void api_origin_free(struct api_origin *o)
{
	if (!o)
		return;
	free_names(o->names, o->n);
	pthread_rwlock_destroy(&o->lock);
	free(o);
}

/* ---- Host --------------------------------------------------------------- */

/* name (n bytes) is pattern, or under it when pattern is "*.domain". */
static bool name_matches(const char *name, size_t n, const char *pattern)
{
	size_t p = strlen(pattern);

	if (strncmp(pattern, "*.", 2) == 0)
		return n > p - 1 &&
		       strncasecmp(name + n - (p - 1), pattern + 1, p - 1) == 0;
	return n == p && strncasecmp(name, pattern, n) == 0;
}

/* The host part of a Host value (no port, no brackets) into out. */
static bool host_part(const char *host, char *out, size_t size, bool *v6)
{
	const char *end;
	size_t n;

	*v6 = host[0] == '[';
	if (*v6) {
		end = strchr(host, ']');
		if (!end || (end[1] && end[1] != ':'))
			return false;
		host++;
	} else {
		end = strchr(host, ':');
		if (!end)
			end = host + strlen(host);
		else if (strchr(end + 1, ':'))
			return false;
	}
	n = (size_t)(end - host);
	if (n > 0 && !*v6 && host[n - 1] == '.')
		n--; /* "localhost." is localhost */
	if (n == 0 || n >= size)
		return false;
	memcpy(out, host, n);
	out[n] = '\0';
	return true;
}

static bool host_allowed(struct api_origin *o, const char *host)
{
	char name[HOST_MAX + 1];
	unsigned char addr[16];
	size_t n;
	bool v6, ok = false;

	if (!host_part(host, name, sizeof(name), &v6))
		return false;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, name, addr) == 1)
		return true;
	if (v6)
		return false;
	n = strlen(name);
	if (name_matches(name, n, "localhost") ||
	    name_matches(name, n, "*.localhost"))
		return true;
	pthread_rwlock_rdlock(&o->lock);
	ok = o->any;
	for (size_t i = 0; !ok && i < o->n; i++)
		ok = name_matches(name, n, o->names[i]);
	pthread_rwlock_unlock(&o->lock);
	return ok;
}

/* ---- Origin, Referer, Sec-Fetch-Site ------------------------------------ */

/* Does url (an Origin, or a Referer when whole_url) name host as its
 * authority, over http or https? */
static bool same_origin(const char *url, const char *host, bool whole_url)
{
	const char *authority, *end;
	size_t n;

	if (strncasecmp(url, "http://", 7) == 0)
		authority = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		authority = url + 8;
	else
		return false; /* "null", file:, chrome-extension: */
	end = authority + strcspn(authority, "/?#");
	if (!whole_url && *end)
		return false;
	n = (size_t)(end - authority);
	return n == strlen(host) && strncasecmp(authority, host, n) == 0;
}

static bool refuse(struct api_refusal *why, int status, const char *error,
		   const char *what, const char *value)
{
	why->status = status;
	why->error = error;
	snprintf(why->message, sizeof(why->message), "%s '%.120s'", what,
		 value);
	return true;
}

bool api_origin_refuse(struct api_origin *o, struct MHD_Connection *c,
		       const char *url, const char *method,
		       struct api_refusal *why)
{
	const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						       MHD_HTTP_HEADER_HOST);
	const char *origin =
		MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					    MHD_HTTP_HEADER_ORIGIN);
	const char *site = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						       "Sec-Fetch-Site");
	const char *referer =
		MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					    MHD_HTTP_HEADER_REFERER);
	bool page = strcmp(url, "/") == 0 &&
		    (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);

	/* HTTP/1.0 may leave Host out (libmicrohttpd refuses that in 1.1);
	 * a browser never does. */
	if (host && !host_allowed(o, host))
		return refuse(why, 421, "misdirected",
			      "this daemon does not "
			      "answer to Host (see allowed_hosts):",
			      host);
	if (page)
		return false;
	if (origin && (!host || !same_origin(origin, host, false)))
		return refuse(why, 403, "cross_site",
			      "a request from another "
			      "site is refused: Origin",
			      origin);
	if (site && (strcasecmp(site, "cross-site") == 0 ||
		     strcasecmp(site, "same-site") == 0))
		return refuse(why, 403, "cross_site",
			      "a request from another "
			      "site is refused: Sec-Fetch-Site",
			      site);
	if (referer && (!host || !same_origin(referer, host, true)))
		return refuse(why, 403, "cross_site",
			      "a request from another "
			      "site is refused: Referer",
			      referer);
	return false;
}
