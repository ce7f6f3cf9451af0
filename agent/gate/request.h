/*
 * request: reading a client's request, strictly (the checks client.h
 * lists): the head's line endings as it arrives, then http-parser over the
 * whole head and the gate's own checks of what it found, then the body's
 * framing as its bytes are fed. It only reads and judges: what to answer,
 * and the connection's fate, are client.c's (each function says why it
 * refuses and with which status; the caller answers).
 */
#ifndef GATE_REQUEST_H
#define GATE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

struct client;

/* Check the line endings of what arrived of the head in c->in. 1: the
 * head is whole (its length in *len), 0: more is needed, -1: it is
 * refused with *status, for the reason in *why. */
int request_scan(struct client *c, size_t *len, unsigned *status,
		 const char **why);
/* Parse the whole head at the start of c->in (len bytes, taken from it)
 * into c's request fields, and check it. NULL when it may be served, else
 * why not (and *status). */
const char *request_parse(struct client *c, size_t len, unsigned *status);
/* Parse n bytes of c->in as the body (those parsed are taken from it);
 * the body goes to c->x.up while c proxies. NULL, or why its framing is
 * refused. */
const char *request_body(struct client *c, size_t n);
/* The request has a body to frame (Content-Length > 0, or chunked). */
bool request_has_body(const struct client *c);

#endif
