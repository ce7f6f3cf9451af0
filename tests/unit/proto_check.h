/*
 * proto_check: what the proto tests (test_proto.c, test_proto_endpoint.c)
 * share: long strings to go up to the limits with, and decoding that
 * checks the reason's size, or that a frame encodes back to itself.
 */
#ifndef TESTS_UNIT_PROTO_CHECK_H
#define TESTS_UNIT_PROTO_CHECK_H

#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define ERR_SIZE 256 /* larger than the 120-byte reasons, to check them */

#define S10  "abcdefghij"
#define S31  S10 S10 S10 "a"
#define S32  S31 "b"
#define S63  S10 S10 S10 S10 S10 S10 "abc"
#define S64  S63 "d"
#define S128 S64 S64
#define S129 S128 "x"
#define S256 S128 S128
#define S257 S256 "y"
#define S61  S10 S10 S10 S10 S10 S10 "a"
/* The longest address: a 253-byte DNS name and the longest port. */
#define ADDR259 S63 "." S63 "." S63 "." S61 ":65535"

static inline int decode_len(const char *text, size_t len, size_t max,
			     struct proto_msg *msg, char *err)
{
	char *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, text, len);
	rc = proto_decode(copy, len, max, msg, err, ERR_SIZE);
	free(copy);
	assert_true(strlen(err) <= 120);
	return rc;
}

static inline int decode(const char *text, struct proto_msg *msg, char *err)
{
	return decode_len(text, strlen(text), 65536, msg, err);
}

/* Decode text, which must be valid, and check it re-encodes to itself. */
static inline void round_trip(const char *text, struct proto_msg *msg)
{
	char err[ERR_SIZE];
	char *frame = NULL;
	size_t len = 0;

	if (decode(text, msg, err) != PROTO_OK)
		fail_msg("%s: %s", text, err);
	switch (msg->type) {
	case PROTO_HELLO:
		frame = proto_encode_hello(&msg->u.hello, 0, &len);
		break;
	case PROTO_STATUS:
		frame = proto_encode_status(&msg->u.status, 0, &len);
		break;
	case PROTO_WELCOME:
		frame = proto_encode_welcome(&msg->u.welcome, 0, &len);
		break;
	case PROTO_EVENT:
		frame = proto_encode_event(&msg->u.event, 0, &len);
		break;
	case PROTO_ENDPOINTS: break; /* the daemon's own encoding */
	}
	assert_non_null(frame);
	assert_string_equal(frame, text);
	assert_int_equal(len, strlen(text));
	free(frame);
}

#define HELLO_WITH(extra)                                                      \
	"{\"type\":\"hello\",\"service\":\"web\",\"instance\":\"w\"," extra "}"

/* A frame with what it must be refused with: a code and a substring of the
 * reason. */
struct bad_frame {
	const char *frame;
	int code;
	const char *reason;
};

/* Each of v's n frames is refused as it says, with a close code 1007. */
static inline void check_bad_frames(const struct bad_frame *v, size_t n)
{
	struct proto_msg msg;
	char err[ERR_SIZE];

	for (size_t i = 0; i < n; i++) {
		const struct bad_frame *b = &v[i];
		int rc = decode(b->frame, &msg, err);

		if (rc != b->code || !strstr(err, b->reason))
			fail_msg("%s\n  got %d \"%s\", want %d \"%s\"",
				 b->frame, rc, err, b->code, b->reason);
		assert_int_equal(proto_close_code(rc), 1007);
		/* Nothing to release after a failure. */
		assert_null(msg.u.hello.meta);
	}
}

#endif
