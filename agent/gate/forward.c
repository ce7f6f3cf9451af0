/*
 * forward: the heads written across the gate (see forward.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <http_parser.h>

#include "forward.h"

static bool hop_by_hop(const char *name)
{
	static const char *const names[] = {
		"Connection",
		"Keep-Alive",
		"Proxy-Connection",
		"TE",
		"Trailer",
		"Transfer-Encoding",
		"Upgrade",
		"Proxy-Authenticate",
		"Proxy-Authorization",
		NULL,
	};

	for (size_t i = 0; names[i]; i++)
		if (!strcasecmp(name, names[i]))
			return true;
	return false;
}

/* Headers the gate writes itself, or that carry the message itself: a
 * Connection header cannot name them away. */
static bool essential(const char *name)
{
	return !strcasecmp(name, "Host") ||
	       !strcasecmp(name, "Content-Length") ||
	       !strncasecmp(name, "X-Forwarded-", 12) ||
	       !strcasecmp(name, "Via");
}

/* name goes no further: hop-by-hop, or named by the message's Connection. */
static bool dropped(const char *name, const char *connection)
{
	return hop_by_hop(name) || (connection && !essential(name) &&
				    fields_lists(connection, name));
}

/* A CGI-style gateway (WSGI, PHP, Rack) reads a name upper-cased with
 * '-' as '_': X_Forwarded_For is HTTP_X_FORWARDED_FOR there, as the
 * gate's own X-Forwarded-For is. True when name, so read, is `want` (or
 * starts with it, for a prefix). */
static bool cgi_alias(const char *name, const char *want, bool prefix)
{
	for (; *want; name++, want++) {
		int a = *name == '_' ? '-' : tolower((unsigned char)*name);

		if (!a || a != tolower((unsigned char)*want))
			return false;
	}
	return prefix || !*name;
}

/* A client's header an app could take for one the gate writes or frames
 * the message with. */
static bool aliases_own(const char *name)
{
	return strchr(name, '_') &&
	       (cgi_alias(name, "X-Forwarded-", true) ||
		cgi_alias(name, "Content-Length", false) ||
		cgi_alias(name, "Transfer-Encoding", false));
}

struct out {
	struct buf *b;
	bool failed;
};

static void put(struct out *o, const char *s)
{
	if (buf_str(o->b, s))
		o->failed = true;
}

static void header(struct out *o, const char *name, const char *value)
{
	put(o, name);
	put(o, ": ");
	put(o, value);
	put(o, "\r\n");
}

/* "name: a, b" where a may be absent: one header, never cut short. */
static void header_list(struct out *o, const char *name, const char *before,
			const char *last)
{
	put(o, name);
	put(o, ": ");
	if (before) {
		put(o, before);
		put(o, ", ");
	}
	put(o, last);
	put(o, "\r\n");
}

int forward_request_head(struct buf *out, const struct forward_request *q,
			 const struct forward_conf *fc)
{
	const char *connection = fields_get(q->fields, "Connection", NULL);
	const char *host = fields_get(q->fields, "Host", NULL);
	const char *xff = fields_get(q->fields, "X-Forwarded-For", NULL);
	const char *xfp = fields_get(q->fields, "X-Forwarded-Proto", NULL);
	const char *xfh = fields_get(q->fields, "X-Forwarded-Host", NULL);
	const char *via = fields_get(q->fields, "Via", NULL);
	const char *name, *value;
	struct out o = { out, false };
	bool trust = fc->trust_forwarded;
	size_t pos = 0;
	char length[32];

	out->len = out->off = 0;
	put(&o, q->method);
	put(&o, " ");
	put(&o, fc->prefix);
	put(&o, q->target);
	put(&o, " HTTP/1.1\r\n");
	while (fields_next(q->fields, &pos, &name, &value)) {
		if (q->upgrade && !strcasecmp(name, "Upgrade")) {
			header(&o, name, value);
			continue;
		}
		if (dropped(name, connection) ||
		    !strcasecmp(name, "Content-Length") ||
		    !strcasecmp(name, "Expect") ||
		    !strncasecmp(name, "X-Forwarded-", 12) ||
		    !strcasecmp(name, "Via") || aliases_own(name))
			continue;
		header(&o, name, value);
	}
	header_list(&o, "X-Forwarded-For", trust ? xff : NULL, q->peer_ip);
	header(&o, "X-Forwarded-Proto", trust && xfp ? xfp : "http");
	if ((trust && xfh) || host)
		header(&o, "X-Forwarded-Host", trust && xfh ? xfh : host);
	header_list(&o, "Via", via, fc->via);
	if (!host) /* HTTP/1.0 clients may send none; HTTP/1.1 needs one */
		header(&o, "Host", fc->authority);
	if (q->upgrade)
		header(&o, "Connection", "Upgrade");
	if (q->body && q->chunked) {
		header(&o, "Transfer-Encoding", "chunked");
	} else if (q->body) {
		snprintf(length, sizeof(length), "%llu", q->length);
		header(&o, "Content-Length", length);
	}
	put(&o, "\r\n");
	return o.failed ? -1 : 0;
}

const char *forward_reason(unsigned status)
{
	const char *r = http_status_str((enum http_status)status);

	return r && r[0] != '<' ? r : "Unknown";
}

int forward_response_head(struct buf *out, const struct forward_response *s,
			  const struct forward_conf *fc, bool *chunked,
			  bool *close)
{
	const char *connection = fields_get(s->fields, "Connection", NULL);
	const char *via = fields_get(s->fields, "Via", NULL);
	const char *name, *value;
	struct out o = { out, false };
	bool bodyless = s->status == 204 || s->status == 304 || s->status < 200;
	size_t pos = 0;
	char line[64];

	out->len = out->off = 0;
	*chunked = false;
	snprintf(line, sizeof(line), "HTTP/1.1 %u %s\r\n", s->status,
		 forward_reason(s->status));
	put(&o, line);
	while (fields_next(s->fields, &pos, &name, &value)) {
		if (s->upgrade && !strcasecmp(name, "Upgrade")) {
			header(&o, name, value);
			continue;
		}
		if (dropped(name, connection) || !strcasecmp(name, "Via") ||
		    (!strcasecmp(name, "Content-Length") &&
		     (s->length < 0 || s->status == 204)) ||
		    !strcasecmp(name, "Date"))
			continue;
		header(&o, name, value);
	}
	header_list(&o, "Via", via, fc->via);
	put(&o, forward_date_line());
	if (s->upgrade) {
		header(&o, "Connection", "Upgrade");
	} else if (!bodyless && !s->head_request && s->length < 0) {
		if (s->http10)
			*close = true; /* the close ends the body */
		else
			*chunked = true;
	}
	if (*chunked)
		header(&o, "Transfer-Encoding", "chunked");
	if (*close && !s->upgrade)
		header(&o, "Connection", "close");
	else if (s->http10 && !s->upgrade)
		header(&o, "Connection", "keep-alive");
	put(&o, "\r\n");
	return o.failed ? -1 : 0;
}

const char *forward_date_line(void)
{
	static _Thread_local char line[64];
	static _Thread_local time_t when;
	time_t now = time(NULL);

	if (now != when || !line[0]) {
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(line, sizeof(line),
			 "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
		when = now;
	}
	return line;
}
