/*
 * forward: what crosses the gate, head by head. The request head the app
 * gets is written anew from the client's parsed one, never copied: the
 * hop-by-hop headers go (Connection and what it names, Keep-Alive, TE,
 * Trailer, Transfer-Encoding, Upgrade, Proxy-*), X-Forwarded-For/-Proto/
 * -Host and Via are set, and the body's framing is the gate's own. A
 * client cannot make the gate drop Host or the headers the gate sets by
 * naming them in Connection. The response head the client gets is written
 * the same way from the app's.
 * The heads' fields are read with fields.h.
 */
#ifndef GATE_FORWARD_H
#define GATE_FORWARD_H

#include <stdbool.h>
#include <stddef.h>

#include "fields.h"
#include "ring.h"

/* A parsed client request, as the upstream head is written from it. */
struct forward_request {
	const char *method;
	const char *target; /* the raw request target */
	const struct buf *fields;
	const char *peer_ip;       /* the client's address */
	bool body;                 /* it has one */
	bool chunked;              /* send it chunked (else Content-Length) */
	unsigned long long length; /* its Content-Length */
	bool upgrade;              /* pass Upgrade on */
};

struct forward_conf {
	const char *prefix;    /* the upstream's path prefix, or "" */
	const char *authority; /* Host when the client sent none */
	const char *via;       /* "1.1 discovery-gate" */
	bool trust_forwarded;
};

/* The upstream request head into out (emptied first). -1 when it does not
 * fit the buffer's cap (431 to the client). */
int forward_request_head(struct buf *out, const struct forward_request *q,
			 const struct forward_conf *fc);

/* The client's response head into out (emptied first), from the app's
 * status and fields. length: the body's Content-Length, -1 if none;
 * *chunked is set when the body must go to the client chunked (no length,
 * an HTTP/1.1 client), *close when the connection must close after it
 * (no length and an HTTP/1.0 client, or close asked). -1 when it does not
 * fit. */
struct forward_response {
	unsigned status;
	const struct buf *fields;
	long long length;
	bool head_request; /* the answer to a HEAD */
	bool http10;       /* the client speaks HTTP/1.0 */
	bool upgrade;      /* a 101 to an upgrade */
};
int forward_response_head(struct buf *out, const struct forward_response *s,
			  const struct forward_conf *fc, bool *chunked,
			  bool *close);

/* The reason phrase of a status ("Locked"), "Unknown" if none. */
const char *forward_reason(unsigned status);

/* "Date: ...\r\n" for now, cached per second and per thread. */
const char *forward_date_line(void);

#endif
