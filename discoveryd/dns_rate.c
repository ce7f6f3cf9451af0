/*
 * dns_rate: the per-source query limit (dns.rate_per_source, dns.burst).
 * A token bucket per address, in a fixed table: an IPv4 address, or an
 * IPv6 /64 (one host holds a whole /64), hashed into DNS_RATE_SLOTS
 * slots. Two sources that share a slot take it in turn, each starting
 * with a full bucket: a collision loosens the limit, never tightens it,
 * and no number of sources can make the table grow. One thread owns a
 * table, so there is no lock.
 */
#include <netinet/in.h>
#include <string.h>

#include "dns_int.h"

void dns_rate_init(struct dns_rate *r, double rate, double burst)
{
	memset(r, 0, sizeof(*r));
	r->rate = rate;
	r->burst = burst < 1 ? 1 : burst;
}

static void key_of(const struct sockaddr *addr, unsigned char key[8])
{
	memset(key, 0, 8);
	if (addr->sa_family == AF_INET) {
		memcpy(key, &((const struct sockaddr_in *)addr)->sin_addr, 4);
	} else if (addr->sa_family == AF_INET6) {
		const struct in6_addr *a =
			&((const struct sockaddr_in6 *)addr)->sin6_addr;

		/* An IPv4-mapped address is its IPv4 address. */
		if (IN6_IS_ADDR_V4MAPPED(a))
			memcpy(key, a->s6_addr + 12, 4);
		else
			memcpy(key, a->s6_addr, 8);
		key[7] ^= IN6_IS_ADDR_V4MAPPED(a) ? 0 : 0x80; /* apart */
	}
}

static size_t slot_of(const unsigned char key[8])
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (int i = 0; i < 8; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return (size_t)(h % DNS_RATE_SLOTS);
}

bool dns_rate_take(struct dns_rate *r, const struct sockaddr *addr,
		   int64_t now_us)
{
	unsigned char key[8];
	struct dns_bucket *b;

	if (r->rate <= 0)
		return true;
	key_of(addr, key);
	b = &r->slots[slot_of(key)];
	if (!b->at_us || memcmp(b->key, key, sizeof(key)) != 0) {
		memcpy(b->key, key, sizeof(key));
		b->tokens = r->burst;
	} else {
		b->tokens += (double)(now_us - b->at_us) * r->rate / 1e6;
		if (b->tokens > r->burst)
			b->tokens = r->burst;
	}
	b->at_us = now_us ? now_us : 1;
	if (b->tokens < 1)
		return false;
	b->tokens -= 1;
	return true;
}
