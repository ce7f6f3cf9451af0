/*
 * dns_cache: answers already written, per thread. A published set never
 * changes (epboard.h), so the answer to one question about one set, from
 * one starting record, is the same bytes every time but for the query's
 * ID and its RD and CD bits: those are set in a copy, and libldns builds
 * nothing. A set is known by its index, which no other set in this
 * process ever has (the hub's endpoint clock numbers them all): an entry
 * holds no reference to its set, so a cache never keeps old sets alive,
 * and a newer set simply misses and takes the slot over.
 *
 * Direct-mapped (a collision replaces), DNS_CACHE_SLOTS entries, one
 * table per thread: no lock. Only answers about a service's set are kept
 * (the others are cheap), and only up to DNS_CACHE_ANSWER_MAX bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "dns_int.h"

struct dns_cache_entry {
	uint64_t index; /* the set's */
	uint32_t rotation;
	uint16_t qtype;
	uint16_t limit;
	bool tcp, edns;
	uint8_t qname_len;
	uint8_t qname[255]; /* as the query spelt it: its case is echoed */
	uint8_t *wire;      /* NULL: empty */
	size_t len;
	struct dns_outcome outcome;
};

struct dns_cache {
	struct dns_cache_entry slots[DNS_CACHE_SLOTS];
};

struct dns_cache *dns_cache_new(void)
{
	return calloc(1, sizeof(struct dns_cache));
}

static void entry_clear(struct dns_cache_entry *e)
{
	free(e->wire);
	memset(e, 0, sizeof(*e));
}

void dns_cache_free(struct dns_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < DNS_CACHE_SLOTS; i++)
		entry_clear(&c->slots[i]);
	free(c);
}

static struct dns_cache_entry *slot(struct dns_cache *c,
				    const struct dns_cache_key *k)
{
	uint64_t h = 1469598103934665603ULL ^ k->index;

	for (size_t i = 0; i < k->qname_len; i++)
		h = (h ^ k->qname[i]) * 1099511628211ULL;
	h = (h ^ k->qtype ^ (uint64_t)k->rotation << 16 ^
	     (uint64_t)k->limit << 40 ^ (uint64_t)k->tcp << 62) *
	    1099511628211ULL;
	return &c->slots[(h >> 17) % DNS_CACHE_SLOTS];
}

static bool same(const struct dns_cache_entry *e, const struct dns_cache_key *k)
{
	return e->index == k->index && e->rotation == k->rotation &&
	       e->qtype == k->qtype && e->limit == k->limit &&
	       e->tcp == k->tcp && e->edns == k->edns &&
	       e->qname_len == k->qname_len &&
	       memcmp(e->qname, k->qname, k->qname_len) == 0;
}

int dns_cache_get(struct dns_cache *c, const struct dns_cache_key *k,
		  const uint8_t *query, uint8_t **out, size_t *outlen,
		  struct dns_outcome *o)
{
	struct dns_cache_entry *e = slot(c, k);

	if (!e->wire || !same(e, k) || !(*out = malloc(e->len)))
		return -1;
	memcpy(*out, e->wire, e->len);
	*outlen = e->len;
	*o = e->outcome;
	LDNS_ID_SET(*out, LDNS_ID_WIRE(query));
	if (LDNS_RD_WIRE(query))
		LDNS_RD_SET(*out);
	else
		LDNS_RD_CLR(*out);
	if (LDNS_CD_WIRE(query))
		LDNS_CD_SET(*out);
	else
		LDNS_CD_CLR(*out);
	return 0;
}

void dns_cache_put(struct dns_cache *c, const struct dns_cache_key *k,
		   const uint8_t *wire, size_t len, const struct dns_outcome *o)
{
	struct dns_cache_entry *e = slot(c, k);
	uint8_t *copy;

	if (len > DNS_CACHE_ANSWER_MAX || k->qname_len > sizeof(e->qname) ||
	    !(copy = malloc(len)))
		return;
	memcpy(copy, wire, len);
	entry_clear(e);
	e->index = k->index;
	e->rotation = k->rotation;
	e->qtype = k->qtype;
	e->limit = k->limit;
	e->tcp = k->tcp;
	e->edns = k->edns;
	e->qname_len = (uint8_t)k->qname_len;
	memcpy(e->qname, k->qname, k->qname_len);
	e->wire = copy;
	e->len = len;
	e->outcome = *o;
}
