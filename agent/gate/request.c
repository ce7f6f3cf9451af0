/*
 * request: reading a client's request (see request.h): the head's line
 * endings as it arrives, http-parser over the whole head, the checks of
 * what it found that the parser leaves out, and the body's framing.
 *
 * http-parser's callbacks copy the target and the header fields out of
 * `in` (the bytes they point to are shifted away once parsed), and put the
 * body, as decoded, in the ring to the app while the request is proxied;
 * a body answered by the gate itself is parsed only to find its end.
 */
#include <limits.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "client_int.h"
#include "forward.h"
#include "request.h"

#define FIELDS_MAX 128 /* header fields in one request */

static const http_parser_settings settings;

/* ---- the head as it arrives ---------------------------------------------- */

static int refused(unsigned *status, const char **why, unsigned s,
		   const char *w)
{
	*status = s;
	*why = w;
	return -1;
}

int request_scan(struct client *c, size_t *len, unsigned *status,
		 const char **why)
{
	const char *p = c->in.p;
	size_t n = c->in.len, max = (size_t)c->set->env->conf->head_max;

	/* Empty lines before a request are ignored (RFC 9112 2.2). */
	while (n >= 2 && p[0] == '\r' && p[1] == '\n') {
		buf_shift(&c->in, 2);
		n -= 2;
	}
	for (size_t i = c->scanned; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];

		if ((ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t') ||
		    ch == 0x7f)
			return refused(status, why, 400,
				       "a control byte in "
				       "the request head");
		if (p[i] == '\r') {
			if (i + 1 == n)
				break;
			if (p[i + 1] != '\n')
				return refused(status, why, 400,
					       "a bare CR in "
					       "the request head");
		} else if (p[i] == '\n') {
			if (!i || p[i - 1] != '\r')
				return refused(status, why, 400,
					       "a line of the "
					       "request head ends in LF, not "
					       "CRLF");
			if (i + 1 == n)
				break;
			if (p[i + 1] == ' ' || p[i + 1] == '\t')
				return refused(status, why, 400,
					       "a folded "
					       "header line (obs-fold)");
			if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n') {
				*len = i + 3;
				return *len > max ?
					       refused(status, why, 431,
						       "the request head is "
						       "over limits.head") :
					       1;
			}
		}
		c->scanned = i + 1;
	}
	if (n >= max)
		return refused(status, why, 431,
			       "the request head is over limits.head");
	return 0;
}

/* ---- the checks ---------------------------------------------------------- */

bool request_has_body(const struct client *c)
{
	return (c->parser.flags & F_CHUNKED) ||
	       (c->parser.content_length > 0 &&
		c->parser.content_length != ULLONG_MAX);
}

/* RFC 9110 5.6.2: a field name is a token. (Debian builds http-parser
 * lenient, which lets a space into a name: "Content-Length : 5".) */
static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	return true;
}

/* A request target of visible ASCII only (the lenient parser lets bytes
 * past 0x7f through). */
static bool is_visible(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* The request's header checks; NULL if it is fine, else why not (and
 * *status). */
static const char *check_head(struct client *c, unsigned *status)
{
	const http_parser *hp = &c->parser;
	const char *te, *expect, *name, *value;
	size_t hosts, tes;

	*status = 400;
	if (hp->http_major != 1 || hp->http_minor > 1) {
		*status = 505;
		return "only HTTP/1.0 and HTTP/1.1 are served";
	}
	if (hp->method == HTTP_CONNECT) {
		*status = 405;
		return "CONNECT is not served: the gate is not a forward proxy";
	}
	if (c->target.p[0] != '/' || !is_visible(c->target.p))
		return "the request target must be a path of visible ASCII";
	for (size_t pos = 0; fields_next(&c->fields, &pos, &name, &value);)
		if (!is_token(name))
			return "a header field name that is not a token";
	fields_get(&c->fields, "Host", &hosts);
	if (hosts > 1 || (!hosts && !c->http10))
		return "an HTTP/1.1 request needs exactly one Host";
	te = fields_get(&c->fields, "Transfer-Encoding", &tes);
	if (tes && c->http10)
		return "Transfer-Encoding in an HTTP/1.0 request";
	if (tes > 1 || (te && strcasecmp(te, "chunked"))) {
		*status = 501;
		return "the only transfer coding served is chunked";
	}
	expect = fields_get(&c->fields, "Expect", NULL);
	if (expect && strcasecmp(expect, "100-continue")) {
		*status = 417;
		return "the only expectation served is 100-continue";
	}
	c->expect = expect != NULL && !c->http10;
	return NULL;
}

/* ---- parsing ------------------------------------------------------------- */

const char *request_parse(struct client *c, size_t len, unsigned *status)
{
	size_t parsed;
	enum http_errno e;

	c->target.len = c->fields.len = 0;
	c->field_state = 0;
	c->n_fields = 0;
	c->body_done = c->expect = false;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	chunk_check_init(&c->chunks);
	parsed = http_parser_execute(&c->parser, &settings, c->in.p, len);
	e = HTTP_PARSER_ERRNO(&c->parser);
	buf_shift(&c->in, parsed);
	c->scanned = 0;
	*status = 431;
	if (e == HPE_CB_header_field || e == HPE_CB_header_value ||
	    e == HPE_CB_url)
		return "too many header fields";
	*status = 400;
	if ((e != HPE_OK && e != HPE_PAUSED) || parsed != len ||
	    buf_add(&c->target, "", 1))
		return e != HPE_OK && e != HPE_PAUSED ?
			       http_errno_description(e) :
			       "a malformed head";
	c->http10 = c->parser.http_minor == 0;
	c->is_head = c->parser.method == HTTP_HEAD;
	c->keep_alive = http_should_keep_alive(&c->parser);
	c->body_done = c->body_done || !request_has_body(c);
	return check_head(c, status);
}

const char *request_body(struct client *c, size_t n)
{
	size_t parsed = http_parser_execute(&c->parser, &settings, c->in.p, n);
	enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
	const char *why;

	why = e != HPE_OK && e != HPE_PAUSED ?
		      http_errno_description(e) :
	      (c->parser.flags & F_CHUNKED) &&
			      !chunk_check(&c->chunks, c->in.p, parsed) ?
		      "the chunked framing is not CRLF-exact" :
		      NULL;
	buf_shift(&c->in, parsed);
	return why;
}

/* ---- http-parser's callbacks --------------------------------------------- */

static int on_url(http_parser *hp, const char *at, size_t n)
{
	struct client *c = hp->data;

	return buf_add(&c->target, at, n);
}

static int on_field(http_parser *hp, const char *at, size_t n)
{
	struct client *c = hp->data;

	if (c->field_state != 1) {
		if (c->field_state == 2 && buf_add(&c->fields, "", 1))
			return -1; /* ends the value before */
		if (++c->n_fields > FIELDS_MAX)
			return -1;
	}
	c->field_state = 1;
	return buf_add(&c->fields, at, n);
}

static int on_value(http_parser *hp, const char *at, size_t n)
{
	struct client *c = hp->data;

	if (c->field_state == 1 && buf_add(&c->fields, "", 1))
		return -1; /* ends the name */
	c->field_state = 2;
	return buf_add(&c->fields, at, n);
}

static int on_headers_complete(http_parser *hp)
{
	struct client *c = hp->data;

	if ((c->field_state == 1 && buf_add(&c->fields, "\0", 2)) ||
	    (c->field_state == 2 && buf_add(&c->fields, "", 1)))
		return -1;
	c->field_state = 0;
	return 0;
}

static int on_body_data(http_parser *hp, const char *at, size_t n)
{
	struct client *c = hp->data;

	if (c->discard || c->phase != PH_PROXY || !c->x.in_flight)
		return 0; /* not needed (any more) */
	/* feed_body sizes what it feeds to the ring's room */
	return ring_put(&c->x.up, at, n) == n ? 0 : -1;
}

static int on_message_complete(http_parser *hp)
{
	struct client *c = hp->data;

	c->body_done = true;
	http_parser_pause(hp, 1); /* what follows is the next request */
	return 0;
}

static const http_parser_settings settings = {
	.on_url = on_url,
	.on_header_field = on_field,
	.on_header_value = on_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body_data,
	.on_message_complete = on_message_complete,
};
