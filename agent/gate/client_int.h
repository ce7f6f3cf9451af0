/*
 * client_int: what the two halves of the client side share, client.c (the
 * connection: its phases, answers, writing, the exchange and the deadlines)
 * and request.c (reading a request: the head's strict checks, the parse,
 * the body's framing). Not for the rest of the gate: client.h is.
 */
#ifndef GATE_CLIENT_INT_H
#define GATE_CLIENT_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <http_parser.h>

#include "chunk.h"
#include "client.h"
#include "relay.h"

/*
 * A connection goes through phases: IDLE (between requests), HEAD (a
 * request head is arriving), then OWN (the gate answers it) or PROXY (an
 * exchange with the app runs), back to IDLE, or to RELAY after a 101, or
 * to LINGER (the answer is out and the write side shut; what the client
 * still sends is read and dropped for a moment, so that closing never
 * resets an answer it has not read yet).
 */
enum phase { PH_IDLE, PH_HEAD, PH_OWN, PH_PROXY, PH_RELAY, PH_LINGER };

struct client {
	struct watch watch; /* first: the loop's events name it */
	struct clients *set;
	struct client *prev, *next;
	struct sockaddr_storage peer;
	char ip[INET6_ADDRSTRLEN];
	enum phase phase;
	long long since_ms;    /* the phase began */
	long long progress_ms; /* a byte last moved to or from it */
	long long deadline_ms; /* -1: none */
	bool closed;
	bool ready; /* a pipelined request waits in `in` */

	struct buf in;   /* read, not parsed yet */
	size_t scanned;  /* of a head in `in`: checked so far */
	size_t lingered; /* bytes dropped while lingering */
	bool peer_eof;   /* the client shut its side */

	/* the request */
	http_parser parser;
	struct buf target;         /* as sent, NUL-terminated */
	struct buf fields;         /* "name\0value\0"... */
	struct chunk_check chunks; /* a chunked body's framing, strictly */
	int field_state;           /* 0, 1 in a name, 2 in a value */
	size_t n_fields;
	bool in_request; /* counted in env->busy */
	bool body_done;  /* the request is wholly read */
	bool discard;    /* its body is read and dropped */
	bool keep_alive, http10, is_head, expect;

	/* the answer */
	struct buf out;      /* what goes out before body bytes */
	struct framing resp; /* how the body goes to the client */
	bool resp_eof;       /* the whole body is in x.down */
	bool head_out;       /* an answer's head is in `out` */
	bool close_after;
	bool refused;          /* an error of ours, then the close */
	bool blocked;          /* the socket took less than offered */
	struct soon send_soon; /* flush at the end of the pass */

	struct exchange x;
	struct relay relay;
};

#endif
