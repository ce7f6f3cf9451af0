/*
 * chunk: a strict check of a chunked request body's framing (RFC 9112
 * 7.1), byte by byte, beside http-parser. Debian builds http-parser
 * lenient: it takes any two bytes after chunk data for the CRLF, a CR
 * followed by anything after a chunk size, a bare LF inside a chunk
 * extension or ending a trailer line, and a space in a trailer's name.
 * A proxy in front of the gate that reads such bytes otherwise finds
 * another end to the body than the gate, and a request of its choosing
 * in between. The gate refuses them, as it refuses a malformed head.
 */
#ifndef GATE_CHUNK_H
#define GATE_CHUNK_H

#include <stdbool.h>
#include <stddef.h>

struct chunk_check {
	int state;
	unsigned long long left; /* of the chunk's data */
	bool digits;             /* the size line has a digit */
};

void chunk_check_init(struct chunk_check *k);
/* Check the next n body bytes; false at the first byte out of place. */
bool chunk_check(struct chunk_check *k, const char *p, size_t n);

#endif
