/*
 * proto: the agent link's wire messages (docs/protocol.md), decoded strictly
 * and encoded compactly. The contract is in proto.h.
 *
 * A frame passes the size cap, then the strict JSON parse of proto_json.c
 * (nesting, text, numbers, nothing left over). Each message type then has
 * one decoder that validates every known field and, last of all, detaches
 * the subtrees the caller keeps (meta, services, header, value).
 *
 * Seqs are uint64, but cJSON keeps numbers as doubles, exact only up to
 * 2^53. So a seq is read back from the frame's own text (read_seq), and
 * encoded as a raw token printed with PRIu64. For the same reason an
 * event's header and value keep each number's own text where a double
 * would print it back differently (proto_json_exact): they reach every
 * agent byte for byte as the caller wrote them.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "proto_int.h"

#define REASON_MAX PROTO_REASON_MAX

#define NAME_RULE "[a-z0-9][a-z0-9_.-]{0,62}"

/* What the field decoders share: the frame (for seqs), the tree and where
 * the reason goes. */
struct decoder {
	const char *buf;
	size_t len;
	const cJSON *root;
	const char *type; /* message type, prefixes reasons; NULL before */
	char *err;
	size_t errlen;
};

static int vreport(struct decoder *d, int code, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static int report(struct decoder *d, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int invalid(struct decoder *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int vreport(struct decoder *d, int code, const char *fmt, va_list ap)
{
	size_t cap, used = 0;

	if (!d->err || d->errlen == 0)
		return code;
	cap = d->errlen < REASON_MAX + 1 ? d->errlen : REASON_MAX + 1;
	if (d->type) {
		int n = snprintf(d->err, cap, "%s: ", d->type);

		if (n > 0)
			used = (size_t)n < cap ? (size_t)n : cap - 1;
	}
	vsnprintf(d->err + used, cap - used, fmt, ap);
	return code;
}

static int report(struct decoder *d, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(d, code, fmt, ap);
	va_end(ap);
	return code;
}

static int invalid(struct decoder *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(d, PROTO_E_INVALID, fmt, ap);
	va_end(ap);
	return PROTO_E_INVALID;
}

/* ---- seqs: uint64 read from the text --------------------------------- */

/* The key of a field path ("resume.seq" -> "seq"); reasons show the path. */
static const char *key_of(const char *path)
{
	const char *dot = strrchr(path, '.');

	return dot ? dot + 1 : path;
}

static int read_seq(struct decoder *d, const cJSON *obj, const char *path,
		    bool required, uint64_t *out)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key_of(path));
	const char *token;
	size_t token_len;
	uint64_t v;

	if (!item)
		return required ? invalid(d, "'%s' is required", path) : 0;
	/* The text and the tree must agree: a mismatch would mean the walk
	 * found the wrong token, and a wrong seq is worse than none. */
	if (!cJSON_IsNumber(item) ||
	    !proto_number_text(d->root, item, d->buf, d->len, &token,
			       &token_len) ||
	    !proto_parse_u64(token, token_len, &v) ||
	    (double)v != item->valuedouble)
		return invalid(d, "'%s' must be an integer in [0, 2^64)", path);
	*out = v;
	return 0;
}

/* ---- fields ----------------------------------------------------------- */

static bool absent(const cJSON *item)
{
	return !item || cJSON_IsNull(item);
}

/* obj[path]'s string; NULL with *rc = 0 when absent and optional, NULL
 * with *rc < 0 when missing or not a string. */
static const char *string_field(struct decoder *d, const cJSON *obj,
				const char *path, bool required, int *rc)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key_of(path));

	*rc = 0;
	if (cJSON_IsString(item))
		return item->valuestring;
	if (!item && required)
		*rc = invalid(d, "'%s' is required", path);
	else if (required || !absent(item))
		*rc = invalid(d, "'%s' must be a string", path);
	return NULL;
}

/* A string of at most size - 1 bytes, copied into out ("" when absent). */
static int copy_field(struct decoder *d, const cJSON *obj, const char *path,
		      bool required, char *out, size_t size)
{
	int rc;
	const char *s = string_field(d, obj, path, required, &rc);
	size_t n;

	if (!s)
		return rc;
	n = strlen(s);
	if (n >= size)
		return invalid(d, "'%s' must be at most %zu bytes", path,
			       size - 1);
	memcpy(out, s, n + 1);
	return 0;
}

static int bool_field(struct decoder *d, const cJSON *obj, const char *path,
		      bool *out)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key_of(path));

	if (!cJSON_IsBool(item))
		return invalid(d, "'%s' must be true or false", path);
	*out = cJSON_IsTrue(item);
	return 0;
}

/* ---- messages --------------------------------------------------------- */

/* root[key]: at most max distinct names (what: "service", "tag") into
 * out, *n of them; absent is none. */
static int name_list(struct decoder *d, const cJSON *root, const char *key,
		     const char *what, size_t max,
		     char (*out)[PROTO_NAME_MAX + 1], size_t *n)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, key);
	const cJSON *entry;

	if (absent(list))
		return 0;
	if (!cJSON_IsArray(list))
		return invalid(d, "'%s' must be an array", key);
	cJSON_ArrayForEach (entry, list) {
		if (*n == max)
			return invalid(d, "'%s' has more than %zu entries", key,
				       max);
		if (!cJSON_IsString(entry) ||
		    !proto_valid_name(entry->valuestring))
			return invalid(d, "'%s' entries must match " NAME_RULE,
				       key);
		for (size_t i = 0; i < *n; i++)
			if (strcmp(out[i], entry->valuestring) == 0)
				return invalid(d, "'%s' lists a %s twice", key,
					       what);
		strcpy(out[(*n)++], entry->valuestring);
	}
	return 0;
}

static int decode_depends(struct decoder *d, const cJSON *root,
			  struct proto_hello *h)
{
	return name_list(d, root, "depends_on", "service", PROTO_DEPENDS_MAX,
			 h->depends_on, &h->n_depends);
}

/* "watch": true (its depends_on), false, or a list of services. */
static int decode_watch(struct decoder *d, const cJSON *root,
			struct proto_hello *h)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(root, "watch");

	if (cJSON_IsBool(w)) {
		h->watch_deps = cJSON_IsTrue(w);
		return 0;
	}
	return name_list(d, root, "watch", "service", PROTO_DEPENDS_MAX,
			 h->watch, &h->n_watch);
}

static int decode_tags(struct decoder *d, const cJSON *root,
		       struct proto_hello *h)
{
	return name_list(d, root, "tags", "tag", PROTO_TAGS_MAX, h->tags,
			 &h->n_tags);
}

/* The endpoint: address (host:port), weight. */
static int decode_endpoint(struct decoder *d, const cJSON *root,
			   struct proto_hello *h)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(root, "weight");
	int rc = copy_field(d, root, "address", false, h->address,
			    sizeof(h->address));

	if (rc)
		return rc;
	if (h->address[0] && !proto_valid_address(h->address))
		return invalid(d,
			       "'address' must be host:port (an IPv4 address, "
			       "[IPv6] or a DNS name; port 1-65535)");
	h->weight = PROTO_WEIGHT_DEFAULT;
	if (absent(w))
		return decode_tags(d, root, h);
	/* The range first: the cast of a double out of int's range is
	 * undefined. */
	if (!cJSON_IsNumber(w) || !(w->valuedouble >= PROTO_WEIGHT_MIN) ||
	    w->valuedouble > PROTO_WEIGHT_MAX ||
	    w->valuedouble != (double)(int)w->valuedouble)
		return invalid(d, "'weight' must be an integer from %d to %d",
			       PROTO_WEIGHT_MIN, PROTO_WEIGHT_MAX);
	h->weight = (unsigned)w->valuedouble;
	return decode_tags(d, root, h);
}

static int decode_resume(struct decoder *d, const cJSON *root,
			 struct proto_hello *h)
{
	const cJSON *resume = cJSON_GetObjectItemCaseSensitive(root, "resume");
	int rc;

	if (absent(resume))
		return 0;
	if (!cJSON_IsObject(resume))
		return invalid(d, "'resume' must be an object");
	rc = copy_field(d, resume, "resume.epoch", true, h->resume_epoch,
			sizeof(h->resume_epoch));
	if (rc == 0)
		rc = read_seq(d, resume, "resume.seq", true, &h->resume_seq);
	h->has_resume = rc == 0;
	return rc;
}

static int decode_hello(struct decoder *d, cJSON *root, struct proto_msg *msg)
{
	struct proto_hello *h = &msg->u.hello;
	cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "meta");
	const char *s;
	int rc;

	if (!(s = string_field(d, root, "service", true, &rc)))
		return rc;
	if (!proto_valid_name(s))
		return invalid(d, "'service' must match " NAME_RULE);
	strcpy(h->service, s);
	if (!(s = string_field(d, root, "instance", true, &rc)))
		return rc;
	if (!proto_valid_instance(s))
		return invalid(d,
			       "'instance' must be 1-%d printable bytes, no "
			       "spaces",
			       PROTO_INSTANCE_MAX);
	strcpy(h->instance, s);
	if ((rc = decode_endpoint(d, root, h)) ||
	    (rc = decode_depends(d, root, h)) ||
	    (rc = decode_watch(d, root, h)) || (rc = decode_resume(d, root, h)))
		return rc;
	if (!absent(meta) && !cJSON_IsObject(meta))
		return invalid(d, "'meta' must be an object");
	if (!absent(meta))
		h->meta = cJSON_DetachItemViaPointer(root, meta);
	return 0;
}

/*
 * ready alone (the first protocol), or state with ready (which must agree,
 * for daemons that read ready only), and an optional load.
 */
static int decode_status(struct decoder *d, cJSON *root, struct proto_msg *msg)
{
	struct proto_status *st = &msg->u.status;
	const cJSON *ready = cJSON_GetObjectItemCaseSensitive(root, "ready");
	const cJSON *load = cJSON_GetObjectItemCaseSensitive(root, "load");
	const char *state;
	int rc, v;

	if (!(state = string_field(d, root, "state", false, &rc)) && rc)
		return rc;
	if (!state || !absent(ready)) {
		rc = bool_field(d, root, "ready", &st->ready);
		if (rc)
			return rc;
	}
	if (state) {
		if ((v = proto_state_parse(state)) < 0)
			return invalid(d, "'state' must be ready, draining or "
					  "notready");
		st->state = (enum proto_state)v;
		if (!absent(ready) &&
		    st->ready != (st->state == PROTO_STATE_READY))
			return invalid(d, "'ready' and 'state' disagree");
		st->ready = st->state == PROTO_STATE_READY;
	} else {
		st->state = st->ready ? PROTO_STATE_READY :
					PROTO_STATE_NOTREADY;
	}
	if (absent(load))
		return 0;
	if (!cJSON_IsNumber(load) || !(load->valuedouble >= 0.0) ||
	    load->valuedouble > 1.0)
		return invalid(d, "'load' must be a number from 0 to 1");
	st->has_load = true;
	st->load = load->valuedouble;
	return 0;
}

static int decode_watched(struct decoder *d, const cJSON *root);

static int decode_welcome(struct decoder *d, cJSON *root, struct proto_msg *msg)
{
	struct proto_welcome *w = &msg->u.welcome;
	cJSON *services = cJSON_GetObjectItemCaseSensitive(root, "services");
	cJSON *endpoints;
	const cJSON *entry;
	int rc;

	if ((rc = copy_field(d, root, "node", true, w->node,
			     sizeof(w->node))) ||
	    (rc = copy_field(d, root, "epoch", true, w->epoch,
			     sizeof(w->epoch))) ||
	    (rc = read_seq(d, root, "seq", true, &w->seq)) ||
	    (rc = bool_field(d, root, "recovered", &w->recovered)) ||
	    (rc = read_seq(d, root, "replay", false, &w->replay)))
		return rc;
	if (!cJSON_IsObject(services))
		return invalid(d, "'services' must be an object");
	cJSON_ArrayForEach (entry, services)
		if (!proto_valid_name(entry->string) || !cJSON_IsBool(entry))
			return invalid(d, "'services' must map " NAME_RULE
					  " to true or false");
	if ((rc = decode_watched(d, root)))
		return rc;
	w->services = cJSON_DetachItemViaPointer(root, services);
	if ((endpoints = cJSON_GetObjectItemCaseSensitive(root, "endpoints")))
		w->endpoints = cJSON_DetachItemViaPointer(root, endpoints);
	return 0;
}

/* Every endpoint of list, checked. */
static int check_list(struct decoder *d, const cJSON *list, const char *key)
{
	const cJSON *e;
	char why[PROTO_REASON_MAX];

	if (!cJSON_IsArray(list))
		return invalid(d, "'%s' must be an array", key);
	cJSON_ArrayForEach (e, list)
		if (proto_check_endpoint(e, why, sizeof(why)) != 0)
			return invalid(d, "'%s': %s", key, why);
	return 0;
}

/* The welcome's endpoints: service -> {"index","endpoints"}. */
static int decode_watched(struct decoder *d, const cJSON *root)
{
	const cJSON *all = cJSON_GetObjectItemCaseSensitive(root, "endpoints");
	const cJSON *one;
	uint64_t index;
	int rc;

	if (absent(all))
		return 0;
	if (!cJSON_IsObject(all))
		return invalid(d, "'endpoints' must be an object");
	cJSON_ArrayForEach (one, all) {
		if (!proto_valid_name(one->string) || !cJSON_IsObject(one))
			return invalid(d, "'endpoints' must map " NAME_RULE
					  " to objects");
		if ((rc = read_seq(d, one, "endpoints.index", true, &index)) ||
		    (rc = check_list(
			     d,
			     cJSON_GetObjectItemCaseSensitive(one, "endpoints"),
			     "endpoints")))
			return rc;
	}
	return 0;
}

static int decode_endpoints(struct decoder *d, cJSON *root,
			    struct proto_msg *msg)
{
	struct proto_endpoints *e = &msg->u.endpoints;
	cJSON *set = cJSON_GetObjectItemCaseSensitive(root, "endpoints");
	cJSON *gone;
	const cJSON *id;
	int rc;

	if ((rc = copy_field(d, root, "service", true, e->service,
			     sizeof(e->service))) ||
	    (rc = read_seq(d, root, "index", true, &e->index)))
		return rc;
	if (!proto_valid_name(e->service))
		return invalid(d, "'service' must match " NAME_RULE);
	if ((e->full = set != NULL)) {
		if ((rc = check_list(d, set, "endpoints")))
			return rc;
		e->set = cJSON_DetachItemViaPointer(root, set);
		return 0;
	}
	set = cJSON_GetObjectItemCaseSensitive(root, "set");
	gone = cJSON_GetObjectItemCaseSensitive(root, "gone");
	if ((rc = read_seq(d, root, "since", true, &e->since)) ||
	    (rc = check_list(d, set, "set")))
		return rc;
	if (!cJSON_IsArray(gone))
		return invalid(d, "'gone' must be an array");
	cJSON_ArrayForEach (id, gone)
		if (!cJSON_IsString(id) ||
		    !proto_valid_instance(id->valuestring))
			return invalid(d, "'gone' must list instance ids");
	e->set = cJSON_DetachItemViaPointer(root, set);
	e->gone = cJSON_DetachItemViaPointer(root, gone);
	return 0;
}

static int decode_event(struct decoder *d, cJSON *root, struct proto_msg *msg)
{
	struct proto_event *e = &msg->u.event;
	cJSON *header = cJSON_GetObjectItemCaseSensitive(root, "header");
	cJSON *value = cJSON_GetObjectItemCaseSensitive(root, "value");
	int rc;

	if ((rc = copy_field(d, root, "epoch", true, e->epoch,
			     sizeof(e->epoch))) ||
	    (rc = read_seq(d, root, "seq", true, &e->seq)) ||
	    (rc = copy_field(d, root, "kind", true, e->kind,
			     sizeof(e->kind))) ||
	    (rc = copy_field(d, root, "command", true, e->command,
			     sizeof(e->command))))
		return rc;
	if (!absent(header) && !cJSON_IsObject(header))
		return invalid(d, "'header' must be an object");
	/* The seq is read: the rest keeps its numbers as the daemon wrote
	 * them, so the app sees header and value byte for byte. */
	if (proto_json_exact(root, d->buf, d->len) != 0)
		return report(d, PROTO_E_NOMEM, "out of memory");
	if (!absent(header))
		e->header = cJSON_DetachItemViaPointer(root, header);
	/* value is any JSON, null included: absent is the only "none". */
	if (value)
		e->value = cJSON_DetachItemViaPointer(root, value);
	return 0;
}

static const struct {
	const char *name;
	enum proto_type type;
	int (*decode)(struct decoder *d, cJSON *root, struct proto_msg *msg);
} message_types[] = {
	{ "hello", PROTO_HELLO, decode_hello },
	{ "status", PROTO_STATUS, decode_status },
	{ "welcome", PROTO_WELCOME, decode_welcome },
	{ "event", PROTO_EVENT, decode_event },
	{ "endpoints", PROTO_ENDPOINTS, decode_endpoints },
};

static int decode_root(struct decoder *d, cJSON *root, struct proto_msg *msg)
{
	const cJSON *type;

	if (!cJSON_IsObject(root))
		return invalid(d, "a frame must be a JSON object");
	type = cJSON_GetObjectItemCaseSensitive(root, "type");
	if (!cJSON_IsString(type))
		return invalid(d, "'type' must be a string");
	for (size_t i = 0; i < sizeof(message_types) / sizeof(message_types[0]);
	     i++) {
		if (strcmp(type->valuestring, message_types[i].name) != 0)
			continue;
		d->type = message_types[i].name;
		msg->type = message_types[i].type;
		return message_types[i].decode(d, root, msg);
	}
	return invalid(d, "unknown message type");
}

int proto_decode(const char *buf, size_t len, size_t max_len,
		 struct proto_msg *msg, char *err, size_t errlen)
{
	struct decoder d = {
		.buf = buf, .len = len, .err = err, .errlen = errlen
	};
	cJSON *root;
	int rc;

	memset(msg, 0, sizeof(*msg));
	if (err && errlen > 0)
		err[0] = '\0';
	if (max_len > 0 && len > max_len)
		return report(&d, PROTO_E_TOOBIG,
			      "frame of %zu bytes is over the %zu-byte limit",
			      len, max_len);
	root = proto_parse_json(buf, len, PROTO_DEPTH_MAX, err, errlen);
	if (!root)
		return PROTO_E_JSON;
	d.root = root;
	rc = decode_root(&d, root, msg);
	cJSON_Delete(root);
	if (rc != PROTO_OK)
		proto_msg_release(msg);
	return rc;
}

void proto_msg_release(struct proto_msg *msg)
{
	if (!msg)
		return;
	switch (msg->type) {
	case PROTO_HELLO:
		cJSON_Delete(msg->u.hello.meta);
		msg->u.hello.meta = NULL;
		break;
	case PROTO_WELCOME:
		cJSON_Delete(msg->u.welcome.services);
		cJSON_Delete(msg->u.welcome.endpoints);
		msg->u.welcome.services = NULL;
		msg->u.welcome.endpoints = NULL;
		break;
	case PROTO_ENDPOINTS:
		cJSON_Delete(msg->u.endpoints.set);
		cJSON_Delete(msg->u.endpoints.gone);
		msg->u.endpoints.set = msg->u.endpoints.gone = NULL;
		break;
	case PROTO_EVENT:
		cJSON_Delete(msg->u.event.header);
		cJSON_Delete(msg->u.event.value);
		msg->u.event.header = NULL;
		msg->u.event.value = NULL;
		break;
	default: break;
	}
}

/* ---- encoding --------------------------------------------------------- */

static char *frame_text(const char *text, size_t n, size_t headroom,
			size_t *len)
{
	char *frame;

	if (headroom > SIZE_MAX - n - 1)
		return NULL;
	frame = malloc(headroom + n + 1);
	if (!frame)
		return NULL;
	memcpy(frame + headroom, text, n + 1);
	if (len)
		*len = n;
	return frame;
}

char *proto_print(const cJSON *json, size_t headroom, size_t *len)
{
	char *text = cJSON_PrintUnformatted(json);
	char *frame;

	if (!text)
		return NULL;
	frame = frame_text(text, strlen(text), headroom, len);
	cJSON_free(text);
	return frame;
}

/* Add item under a literal key (the CS variant: no copy of the key). Takes
 * item, which may be NULL after a failed allocation. */
static bool put(cJSON *obj, const char *key, cJSON *item)
{
	if (!item)
		return false;
	if (!cJSON_AddItemToObjectCS(obj, key, item)) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

static cJSON *seq_item(uint64_t seq)
{
	char text[24];

	snprintf(text, sizeof(text), "%" PRIu64, seq);
	return cJSON_CreateRaw(text);
}

/* A stand-in for item that prints the same and frees none of it, so the
 * caller's header, value, meta and services are neither copied nor
 * consumed. */
static cJSON *reference_of(const cJSON *item)
{
	switch (item->type & 0xFF) {
	case cJSON_Object: return cJSON_CreateObjectReference(item->child);
	case cJSON_Array: return cJSON_CreateArrayReference(item->child);
	case cJSON_String:
		return cJSON_CreateStringReference(item->valuestring);
	case cJSON_Raw: return cJSON_CreateRaw(item->valuestring);
	case cJSON_Number: return cJSON_CreateNumber(item->valuedouble);
	case cJSON_True: return cJSON_CreateTrue();
	case cJSON_False: return cJSON_CreateFalse();
	default: return cJSON_CreateNull();
	}
}

static char *finish(cJSON *root, bool ok, size_t headroom, size_t *len)
{
	char *frame = ok ? proto_print(root, headroom, len) : NULL;

	cJSON_Delete(root);
	return frame;
}

char *proto_encode_hello(const struct proto_hello *h, size_t headroom,
			 size_t *len)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *depends = cJSON_CreateArray();
	cJSON *resume = NULL;
	size_t n = h->n_depends < PROTO_DEPENDS_MAX ? h->n_depends :
						      PROTO_DEPENDS_MAX;
	bool ok;

	if (!root) {
		cJSON_Delete(depends);
		return NULL;
	}
	ok = put(root, "type", cJSON_CreateStringReference("hello")) &&
	     put(root, "service", cJSON_CreateStringReference(h->service)) &&
	     put(root, "instance", cJSON_CreateStringReference(h->instance));
	if (ok && h->address[0])
		ok = put(root, "address",
			 cJSON_CreateStringReference(h->address));
	if (ok && h->weight && h->weight != PROTO_WEIGHT_DEFAULT)
		ok = put(root, "weight", cJSON_CreateNumber(h->weight));
	if (ok && h->n_tags) {
		cJSON *tags = cJSON_CreateArray();

		ok = put(root, "tags", tags);
		for (size_t i = 0; ok && i < h->n_tags && i < PROTO_TAGS_MAX;
		     i++)
			ok = cJSON_AddItemToArray(tags,
						  cJSON_CreateStringReference(
							  h->tags[i]));
	}
	/* put even when !ok: it takes depends, so nothing leaks. */
	ok = put(root, "depends_on", depends) && ok;
	for (size_t i = 0; ok && i < n; i++)
		ok = cJSON_AddItemToArray(depends, cJSON_CreateStringReference(
							   h->depends_on[i]));
	if (ok && h->watch_deps)
		ok = put(root, "watch", cJSON_CreateTrue());
	if (ok && !h->watch_deps && h->n_watch) {
		cJSON *watch = cJSON_CreateArray();

		ok = put(root, "watch", watch);
		for (size_t i = 0;
		     ok && i < h->n_watch && i < PROTO_DEPENDS_MAX; i++)
			ok = cJSON_AddItemToArray(watch,
						  cJSON_CreateStringReference(
							  h->watch[i]));
	}
	if (ok && h->meta)
		ok = put(root, "meta", reference_of(h->meta));
	if (ok && h->has_resume) {
		resume = cJSON_CreateObject();
		ok = put(root, "resume", resume) &&
		     put(resume, "epoch",
			 cJSON_CreateStringReference(h->resume_epoch)) &&
		     put(resume, "seq", seq_item(h->resume_seq));
	}
	return finish(root, ok, headroom, len);
}

/* ready always (older daemons read nothing else); state only when it
 * says more than ready does; load when known. */
char *proto_encode_status(const struct proto_status *st, size_t headroom,
			  size_t *len)
{
	char text[128];
	int n;

	if (st->state == PROTO_STATE_DRAINING || st->has_load) {
		n = snprintf(text, sizeof(text),
			     "{\"type\":\"status\",\"ready\":%s,"
			     "\"state\":\"%s\"",
			     st->state == PROTO_STATE_READY ? "true" : "false",
			     proto_state_name(st->state));
		if (st->has_load)
			n += snprintf(text + n, sizeof(text) - (size_t)n,
				      ",\"load\":%.4g", st->load);
		n += snprintf(text + n, sizeof(text) - (size_t)n, "}");
	} else {
		n = snprintf(text, sizeof(text),
			     "{\"type\":\"status\",\"ready\":%s}",
			     st->state == PROTO_STATE_READY ? "true" : "false");
	}
	return frame_text(text, (size_t)n, headroom, len);
}

char *proto_encode_welcome(const struct proto_welcome *w, size_t headroom,
			   size_t *len)
{
	cJSON *root = cJSON_CreateObject();
	bool ok;

	if (!root)
		return NULL;
	ok = put(root, "type", cJSON_CreateStringReference("welcome")) &&
	     put(root, "node", cJSON_CreateStringReference(w->node)) &&
	     put(root, "epoch", cJSON_CreateStringReference(w->epoch)) &&
	     put(root, "seq", seq_item(w->seq)) &&
	     put(root, "recovered", cJSON_CreateBool(w->recovered));
	if (ok && w->recovered)
		ok = put(root, "replay", seq_item(w->replay));
	if (ok)
		ok = put(root, "services",
			 w->services ? reference_of(w->services) :
				       cJSON_CreateObject());
	if (ok && w->endpoints)
		ok = put(root, "endpoints", reference_of(w->endpoints));
	return finish(root, ok, headroom, len);
}

/* A NULL header goes out as {} (apps ported from NetCoreStack expect an
 * object), a NULL value as null. */
char *proto_encode_event(const struct proto_event *e, size_t headroom,
			 size_t *len)
{
	cJSON *root = cJSON_CreateObject();
	bool ok;

	if (!root)
		return NULL;
	ok = put(root, "type", cJSON_CreateStringReference("event")) &&
	     put(root, "epoch", cJSON_CreateStringReference(e->epoch)) &&
	     put(root, "seq", seq_item(e->seq)) &&
	     put(root, "kind", cJSON_CreateStringReference(e->kind)) &&
	     put(root, "command", cJSON_CreateStringReference(e->command)) &&
	     put(root, "header",
		 e->header ? reference_of(e->header) : cJSON_CreateObject()) &&
	     put(root, "value",
		 e->value ? reference_of(e->value) : cJSON_CreateNull());
	return finish(root, ok, headroom, len);
}

/* ---- names and codes -------------------------------------------------- */

static bool is_name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool proto_valid_name(const char *name)
{
	if (!name || !is_name_start(name[0]))
		return false;
	for (size_t i = 1; name[i]; i++) {
		char c = name[i];

		if (i >= PROTO_NAME_MAX)
			return false;
		if (!is_name_start(c) && c != '_' && c != '.' && c != '-')
			return false;
	}
	return true;
}

bool proto_valid_instance(const char *id)
{
	size_t i;

	if (!id)
		return false;
	for (i = 0; id[i]; i++)
		if (i >= PROTO_INSTANCE_MAX || id[i] < 0x21 || id[i] > 0x7E)
			return false;
	return i > 0;
}

int proto_close_code(int err)
{
	switch (err) {
	case PROTO_OK: return 1000;
	case PROTO_E_TOOBIG: return 1009;
	case PROTO_E_JSON:
	case PROTO_E_INVALID: return 1007;
	default: return 1011;
	}
}

void proto_drain_reason(char *out, size_t size, uint32_t spread_ms)
{
	snprintf(out, size, "drain spread_ms=%u", (unsigned)spread_ms);
}

bool proto_drain_hint(const char *reason, uint32_t *spread_ms)
{
	const char *p;

	*spread_ms = 0;
	if (strncmp(reason, "drain", 5) != 0 || (reason[5] && reason[5] != ' '))
		return false;
	for (p = reason + 5; (p = strchr(p, ' '));) {
		unsigned long long v = 0;

		p++;
		if (strncmp(p, "spread_ms=", 10) != 0)
			continue;
		for (p += 10; *p >= '0' && *p <= '9'; p++)
			if ((v = v * 10 + (unsigned)(*p - '0')) >
			    PROTO_DRAIN_SPREAD_MAX)
				v = PROTO_DRAIN_SPREAD_MAX;
		*spread_ms = (uint32_t)v;
	}
	return true;
}
