/*
 * fuzz_proto: libFuzzer harness for proto_decode, the agent link's frame
 * decoder (libcommon/proto.c) and the first code an agent's bytes reach.
 *
 * Each input is one frame, handed over as libwebsockets hands it: exactly
 * `size` bytes, not NUL-terminated, so AddressSanitizer sees any read past
 * the end. Beyond "no crash, no leak, no undefined behaviour" the harness
 * checks the contract in proto.h:
 *
 *   - a failure is one of the PROTO_E_* codes, with a reason of 1 to 120
 *     bytes (it becomes a WebSocket close reason, which holds 123);
 *   - a success encodes back (proto_encode_*, with headroom as the daemon
 *     uses it; an endpoints message as encode_endpoints prints it) to a frame
 * that decodes to the same message: what the daemon accepts it can also say,
 * and nothing is lost on the way (seqs above 2^53, escapes, meta and value
 * trees compared as cJSON prints them).
 *
 * A broken invariant aborts with a line saying which, so libFuzzer keeps
 * the input as a crash.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define MAX_FRAME  (64 * 1024) /* limits.max_message's default */
#define HEADROOM   16          /* LWS_PRE on x86-64 */
#define REASON_MAX 120

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr,                                        \
				"fuzz_proto: %s:%d: check failed: %s\n",       \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

/* Print a subtree the way the encoder would (NULL stays NULL). */
static char *print_tree(const cJSON *item)
{
	char *text;

	if (!item)
		return NULL;
	text = cJSON_PrintUnformatted(item);
	CHECK(text != NULL);
	return text;
}

/* Two subtrees print the same. cJSON_Compare is not used: with duplicate
 * keys it can call a tree unequal to itself. */
static void check_same_tree(const cJSON *a, const cJSON *b)
{
	char *ta = print_tree(a), *tb = print_tree(b);

	CHECK((ta == NULL) == (tb == NULL));
	if (ta) {
		if (strcmp(ta, tb) != 0)
			fprintf(stderr, "fuzz_proto: tree %s became %s\n", ta,
				tb);
		CHECK(strcmp(ta, tb) == 0);
	}
	cJSON_free(ta);
	cJSON_free(tb);
}

static void check_same_hello(const struct proto_hello *a,
			     const struct proto_hello *b)
{
	CHECK(strcmp(a->service, b->service) == 0);
	CHECK(proto_valid_name(a->service));
	CHECK(strcmp(a->instance, b->instance) == 0);
	CHECK(proto_valid_instance(a->instance));
	CHECK(strcmp(a->address, b->address) == 0);
	CHECK(!a->address[0] || proto_valid_address(a->address));
	CHECK(a->weight >= PROTO_WEIGHT_MIN && a->weight <= PROTO_WEIGHT_MAX);
	CHECK(a->weight == b->weight);
	CHECK(a->n_tags <= PROTO_TAGS_MAX && a->n_tags == b->n_tags);
	for (size_t i = 0; i < a->n_tags; i++) {
		CHECK(proto_valid_name(a->tags[i]));
		CHECK(strcmp(a->tags[i], b->tags[i]) == 0);
	}
	CHECK(a->n_depends <= PROTO_DEPENDS_MAX);
	CHECK(a->n_depends == b->n_depends);
	for (size_t i = 0; i < a->n_depends; i++) {
		CHECK(proto_valid_name(a->depends_on[i]));
		CHECK(strcmp(a->depends_on[i], b->depends_on[i]) == 0);
	}
	CHECK(a->has_resume == b->has_resume);
	if (a->has_resume) {
		CHECK(strcmp(a->resume_epoch, b->resume_epoch) == 0);
		CHECK(a->resume_seq == b->resume_seq);
	}
	CHECK(!a->meta || cJSON_IsObject(a->meta));
	check_same_tree(a->meta, b->meta);
}

static void check_same_welcome(const struct proto_welcome *a,
			       const struct proto_welcome *b)
{
	CHECK(strcmp(a->node, b->node) == 0);
	CHECK(strcmp(a->epoch, b->epoch) == 0);
	CHECK(a->seq == b->seq);
	CHECK(a->recovered == b->recovered);
	/* replay is encoded only when recovered (proto.h). */
	if (a->recovered)
		CHECK(a->replay == b->replay);
	CHECK(cJSON_IsObject(a->services));
	check_same_tree(a->services, b->services);
}

static void check_same_event(const struct proto_event *a,
			     const struct proto_event *b)
{
	CHECK(strcmp(a->epoch, b->epoch) == 0);
	CHECK(a->seq == b->seq);
	CHECK(strcmp(a->kind, b->kind) == 0);
	CHECK(strcmp(a->command, b->command) == 0);
	/* A NULL header goes out as {}, a NULL value as null (proto.h). */
	if (a->header) {
		CHECK(cJSON_IsObject(a->header));
		check_same_tree(a->header, b->header);
	} else {
		CHECK(cJSON_IsObject(b->header) && !b->header->child);
	}
	if (a->value)
		check_same_tree(a->value, b->value);
	else
		CHECK(cJSON_IsNull(b->value));
}

/*
 * libcommon has no encoder for an endpoints message (the daemon prints its
 * own, link_watch.c): print one as docs/protocol.md lays it out, the set
 * and gone lists as cJSON prints them, with the headroom the others have.
 * The service is a valid name and needs no escapes.
 */
static char *encode_endpoints(const struct proto_endpoints *e, size_t *len)
{
	char *set = print_tree(e->set), *gone = print_tree(e->gone), *frame;
	size_t cap;
	int n;

	CHECK(set != NULL && (e->full || gone != NULL));
	cap = HEADROOM + strlen(set) + (gone ? strlen(gone) : 0) + 160;
	frame = malloc(cap);
	CHECK(frame != NULL);
	if (e->full)
		n = snprintf(frame + HEADROOM, cap - HEADROOM,
			     "{\"type\":\"endpoints\",\"service\":\"%s\","
			     "\"index\":%" PRIu64 ",\"endpoints\":%s}",
			     e->service, e->index, set);
	else
		n = snprintf(frame + HEADROOM, cap - HEADROOM,
			     "{\"type\":\"endpoints\",\"service\":\"%s\","
			     "\"index\":%" PRIu64 ",\"since\":%" PRIu64
			     ",\"set\":%s,\"gone\":%s}",
			     e->service, e->index, e->since, set, gone);
	CHECK(n > 0 && (size_t)n < cap - HEADROOM);
	*len = (size_t)n;
	free(set);
	free(gone);
	return frame;
}

static void check_same_endpoints(const struct proto_endpoints *a,
				 const struct proto_endpoints *b)
{
	CHECK(strcmp(a->service, b->service) == 0);
	CHECK(a->index == b->index);
	CHECK(a->full == b->full);
	CHECK(a->full || a->since == b->since);
	CHECK(cJSON_IsArray(b->set));
	check_same_tree(a->set, b->set);
	CHECK(a->full ? !b->gone : cJSON_IsArray(b->gone));
	check_same_tree(a->gone, b->gone);
}

static char *encode(const struct proto_msg *m, size_t *len)
{
	switch (m->type) {
	case PROTO_HELLO: return proto_encode_hello(&m->u.hello, HEADROOM, len);
	case PROTO_STATUS:
		return proto_encode_status(&m->u.status, HEADROOM, len);
	case PROTO_WELCOME:
		return proto_encode_welcome(&m->u.welcome, HEADROOM, len);
	case PROTO_EVENT: return proto_encode_event(&m->u.event, HEADROOM, len);
	case PROTO_ENDPOINTS: return encode_endpoints(&m->u.endpoints, len);
	}
	CHECK(!"decoded message of unknown type");
	return NULL;
}

static void round_trip(const struct proto_msg *m)
{
	struct proto_msg again;
	char err[256];
	size_t len = 0;
	char *frame = encode(m, &len);
	int rc;

	CHECK(frame != NULL);
	CHECK(frame[HEADROOM + len] == '\0');
	rc = proto_decode(frame + HEADROOM, len, 0, &again, err, sizeof(err));
	if (rc != PROTO_OK)
		fprintf(stderr,
			"fuzz_proto: re-encoded frame refused (%s): %s\n", err,
			frame + HEADROOM);
	CHECK(rc == PROTO_OK);
	CHECK(again.type == m->type);
	switch (m->type) {
	case PROTO_HELLO: check_same_hello(&m->u.hello, &again.u.hello); break;
	case PROTO_STATUS:
		CHECK(m->u.status.ready == again.u.status.ready);
		CHECK(m->u.status.state == again.u.status.state);
		CHECK(m->u.status.has_load == again.u.status.has_load);
		break;
	case PROTO_WELCOME:
		check_same_welcome(&m->u.welcome, &again.u.welcome);
		break;
	case PROTO_EVENT: check_same_event(&m->u.event, &again.u.event); break;
	case PROTO_ENDPOINTS:
		check_same_endpoints(&m->u.endpoints, &again.u.endpoints);
		break;
	}
	proto_msg_release(&again);
	free(frame);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct proto_msg msg;
	char err[256];
	int rc, depth;

	/* The scan the HTTP API also uses; it stops one past the limit. */
	depth = proto_json_depth(buf, size, PROTO_DEPTH_MAX);
	CHECK(depth >= 0 && depth <= PROTO_DEPTH_MAX + 1);

	memset(err, 'x', sizeof(err));
	rc = proto_decode(buf, size, MAX_FRAME, &msg, err, sizeof(err));
	if (rc != PROTO_OK) {
		size_t n = strnlen(err, sizeof(err));

		CHECK(rc == PROTO_E_TOOBIG || rc == PROTO_E_JSON ||
		      rc == PROTO_E_INVALID || rc == PROTO_E_NOMEM);
		CHECK(n > 0 && n <= REASON_MAX);
		CHECK(proto_close_code(rc) == 1009 ||
		      proto_close_code(rc) == 1007 ||
		      proto_close_code(rc) == 1011);
		/* Depth past the limit is always refused. */
		CHECK(depth <= PROTO_DEPTH_MAX || rc == PROTO_E_JSON ||
		      rc == PROTO_E_TOOBIG);
		/* Releasing a failed decode is allowed and must be a no-op. */
		proto_msg_release(&msg);
		return 0;
	}
	CHECK(size <= MAX_FRAME);
	CHECK(depth <= PROTO_DEPTH_MAX);
	CHECK(err[0] == '\0');
	round_trip(&msg);
	proto_msg_release(&msg);
	proto_msg_release(&msg); /* idempotent: pointers were set to NULL */
	return 0;
}
