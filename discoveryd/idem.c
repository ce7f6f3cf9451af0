/*
 * idem: the idempotency key table (see idem.h). A hash table for lookups
 * and a list in creation order for expiry and eviction: the oldest entry
 * is always at the head, so both are O(1) per entry dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "idem.h"

static uint64_t key_hash(const struct idem *t, const char *key)
{
	return htab_hash(&t->tab, key);
}

int idem_init(struct idem *t, size_t max_keys, int64_t retention_ms)
{
	memset(t, 0, sizeof(*t));
	htab_init(&t->tab, true); /* keys are the callers' choice */
	t->max_keys = max_keys;
	t->retention_ms = retention_ms;
	return 0;
}

static void free_entry(struct idem_entry *e)
{
	free(e->key);
	free(e->body);
	free(e);
}

void idem_release(struct idem *t)
{
	struct idem_entry *e = t->oldest, *next;

	for (; e; e = next) {
		next = e->newer;
		free_entry(e);
	}
	htab_release(&t->tab);
	memset(t, 0, sizeof(*t));
}

void idem_remove(struct idem *t, struct idem_entry *e)
{
	htab_remove(&t->tab, &e->node);
	if (e->older)
		e->older->newer = e->newer;
	else
		t->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		t->newest = e->older;
	t->count--;
	free_entry(e);
}

void idem_expire(struct idem *t, int64_t now_wall_ms)
{
	/* An entry still in flight is its request's: it goes with it. */
	while (t->oldest && t->oldest->status &&
	       now_wall_ms - t->oldest->created_wall_ms >= t->retention_ms)
		idem_remove(t, t->oldest);
}

/* Drop the oldest answered entries until there is room for one more. */
static void make_room(struct idem *t)
{
	struct idem_entry *e = t->oldest, *next;

	for (; e && t->count >= t->max_keys; e = next) {
		next = e->newer;
		if (e->status) {
			idem_remove(t, e);
			t->evicted++;
		}
	}
}

void idem_configure(struct idem *t, size_t max_keys, int64_t retention_ms,
		    int64_t now_wall_ms)
{
	t->max_keys = max_keys;
	t->retention_ms = retention_ms;
	idem_expire(t, now_wall_ms);
	if (t->count > max_keys) {
		t->max_keys = max_keys + 1; /* make_room leaves max - 1 */
		make_room(t);
		t->max_keys = max_keys;
	}
}

struct idem_entry *idem_find(struct idem *t, const char *key,
			     int64_t now_wall_ms)
{
	uint64_t hv = key_hash(t, key);

	idem_expire(t, now_wall_ms);
	for (struct hnode *n = htab_first(&t->tab, hv); n;
	     n = htab_next(n, hv)) {
		struct idem_entry *e = htab_entry(n, struct idem_entry, node);

		if (strcmp(e->key, key) == 0)
			return e;
	}
	return NULL;
}

struct idem_entry *idem_add(struct idem *t, const char *key,
			    const unsigned char *fp, int64_t created_wall_ms)
{
	struct idem_entry *e = calloc(1, sizeof(*e));

	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	make_room(t);
	if (htab_add(&t->tab, &e->node, key_hash(t, key)) != 0) {
		free_entry(e);
		return NULL;
	}
	memcpy(e->fp, fp, IDEM_FP_LEN);
	e->created_wall_ms = created_wall_ms;
	e->older = t->newest;
	if (t->newest)
		t->newest->newer = e;
	else
		t->oldest = e;
	t->newest = e;
	t->count++;
	return e;
}

int idem_answer(struct idem_entry *e, int status, const char *body)
{
	char *copy = body ? strdup(body) : NULL;

	if (body && !copy)
		return -1;
	free(e->body);
	e->body = copy;
	e->status = status;
	return 0;
}

/* ---- journal records ---------------------------------------------------- */

static void hex(const unsigned char *fp, char *out)
{
	for (size_t i = 0; i < IDEM_FP_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", fp[i]);
}

static int unhex(const char *s, unsigned char *fp)
{
	if (!s || strlen(s) != 2 * IDEM_FP_LEN)
		return -1;
	for (size_t i = 0; i < IDEM_FP_LEN; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		fp[i] = (unsigned char)v;
	}
	return 0;
}

static void add_u64(cJSON *o, const char *name, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	cJSON_AddRawToObject(o, name, buf);
}

cJSON *idem_tag(const struct idem_entry *e, int status)
{
	cJSON *o = cJSON_CreateObject();
	char fp[2 * IDEM_FP_LEN + 1];

	hex(e->fp, fp);
	cJSON_AddStringToObject(o, "k", e->key);
	cJSON_AddStringToObject(o, "fp", fp);
	cJSON_AddNumberToObject(o, "st", status);
	cJSON_AddNumberToObject(o, "ts", (double)e->created_wall_ms);
	return o;
}

cJSON *idem_record(const struct idem_entry *e)
{
	cJSON *o = idem_tag(e, e->status);

	cJSON_AddStringToObject(o, "t", "idem");
	if (e->body)
		cJSON_AddStringToObject(o, "body", e->body);
	if (e->seq)
		add_u64(o, "seq", e->seq);
	return o;
}

static double number(const cJSON *o, const char *name)
{
	return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

void idem_restore(struct idem *t, const cJSON *r, uint64_t seq,
		  int64_t now_wall_ms)
{
	const cJSON *k = cJSON_GetObjectItemCaseSensitive(r, "k");
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(r, "body");
	double st = number(r, "st"), ts = number(r, "ts"), s = number(r, "seq");
	const char *hexfp =
		cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "fp"));
	unsigned char fp[IDEM_FP_LEN];
	struct idem_entry *e;

	if (!cJSON_IsString(k) || strlen(k->valuestring) > IDEM_SCOPED_MAX ||
	    unhex(hexfp, fp) != 0 || !(st >= 200 && st < 300) || !(ts > 0) ||
	    now_wall_ms - (int64_t)ts >= t->retention_ms)
		return;
	e = idem_find(t, k->valuestring, now_wall_ms);
	if (!e && !(e = idem_add(t, k->valuestring, fp, (int64_t)ts)))
		return;
	memcpy(e->fp, fp, IDEM_FP_LEN);
	e->applied = true;
	if (seq || s > 0)
		e->seq = seq ? seq : (uint64_t)s;
	if (idem_answer(e, (int)st,
			cJSON_IsString(body) ? body->valuestring : e->body) !=
	    0)
		e->status = (int)st;
}

/* ---- requests ----------------------------------------------------------- */

void idem_fingerprint(const char *method, const char *target, const char *body,
		      size_t len, unsigned char *fp)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned n = IDEM_FP_LEN;

	memset(fp, 0, IDEM_FP_LEN);
	if (!ctx)
		return;
	/* NULs between the parts: no method and target run into each other. */
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, method, strlen(method) + 1);
	EVP_DigestUpdate(ctx, target, strlen(target) + 1);
	if (len)
		EVP_DigestUpdate(ctx, body, len);
	EVP_DigestFinal_ex(ctx, fp, &n);
	EVP_MD_CTX_free(ctx);
}

bool idem_valid_key(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > IDEM_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}
