/*
 * peers: what each source address holds and may do at the agent listener:
 * its open connections, counted from the accept whether or not they ever
 * upgrade (limits.max_agents_per_ip), and its own accept-rate bucket
 * (limits.accept_share_per_ip). A hash table of records keyed by the
 * address text, chained, with a random seed so that chains cannot be aimed
 * at; hub thread only.
 *
 * A record lives while its address holds a connection, and for a while
 * after (idle), so that its bucket remembers an address that churns. Idle
 * records wait in a list, least recently used first, and past
 * PEERS_IDLE_MAX of them the oldest is dropped: the table never holds more
 * than the listener's descriptors plus that many records.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "hub_int.h"

#define PEERS_IDLE_MAX 16384

struct peer {
	struct peer *chain;            /* the bucket's chain */
	struct peer *idle_prev, *idle_next;   /* while it holds nothing */
	unsigned conns;                /* connections open, upgraded or not */
	double tokens;                 /* its accept bucket */
	int64_t refill_ms;             /* 0 = never used: a full bucket */
	char addr[LINK_PEER_MAX];      /* what links keep (peer_of_addr) */
};

static size_t slot_of(const struct hub *h, const char *addr, size_t size)
{
	uint64_t x = 1469598103934665603ULL ^ h->peers_seed;   /* FNV-1a */

	for (const char *p = addr; *p; p++)
		x = (x ^ (unsigned char)*p) * 1099511628211ULL;
	return (size_t)(x ^ (x >> 29)) & (size - 1);
}

static void idle_unlink(struct hub *h, struct peer *p)
{
	*(p->idle_prev ? &p->idle_prev->idle_next : &h->idle_head) = p->idle_next;
	*(p->idle_next ? &p->idle_next->idle_prev : &h->idle_tail) = p->idle_prev;
	p->idle_prev = p->idle_next = NULL;
	h->n_idle--;
}

static void idle_append(struct hub *h, struct peer *p)
{
	p->idle_prev = h->idle_tail;
	p->idle_next = NULL;
	*(h->idle_tail ? &h->idle_tail->idle_next : &h->idle_head) = p;
	h->idle_tail = p;
	h->n_idle++;
}

static void drop(struct hub *h, struct peer *p)
{
	struct peer **q = &h->peers[slot_of(h, p->addr, h->peers_size)];

	while (*q != p)
		q = &(*q)->chain;
	*q = p->chain;
	idle_unlink(h, p);
	h->peers_used--;
	free(p);
}

/* Double the buckets (records stay where they are: links point at them). */
static int grow(struct hub *h)
{
	size_t size = h->peers_size ? h->peers_size * 2 : 256;
	struct peer **t = calloc(size, sizeof(*t));

	if (!t)
		return -1;
	if (!h->peers_size &&
	    getrandom(&h->peers_seed, sizeof(h->peers_seed), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(h->peers_seed))
		h->peers_seed = (uint64_t)(uintptr_t)t ^ (uint64_t)clock_mono_us();
	for (size_t i = 0; i < h->peers_size; i++) {
		struct peer *p = h->peers[i], *next;

		for (; p; p = next) {
			size_t s = slot_of(h, p->addr, size);

			next = p->chain;
			p->chain = t[s];
			t[s] = p;
		}
	}
	free(h->peers);
	h->peers = t;
	h->peers_size = size;
	return 0;
}

struct peer *peers_get(struct hub *h, const char *addr)
{
	struct peer *p;
	size_t s;

	if (h->peers_size) {
		for (p = h->peers[slot_of(h, addr, h->peers_size)]; p; p = p->chain)
			if (strcmp(p->addr, addr) == 0)
				return p;
	}
	if (h->peers_used + 1 > h->peers_size && grow(h) != 0)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	s = slot_of(h, addr, h->peers_size);
	p->chain = h->peers[s];
	h->peers[s] = p;
	h->peers_used++;
	idle_append(h, p);
	if (h->n_idle > PEERS_IDLE_MAX)
		drop(h, h->idle_head);          /* never p: it is the newest */
	return p;
}

void peers_hold(struct hub *h, struct peer *p)
{
	if (p->conns++ == 0)
		idle_unlink(h, p);
}

void peers_put(struct hub *h, struct peer *p)
{
	if (--p->conns == 0)
		idle_append(h, p);
}

unsigned peers_conns(const struct peer *p)
{
	return p->conns;
}

const char *peers_addr(const struct peer *p)
{
	return p->addr;
}

struct peer *peer_of_addr(const char *addr)
{
	return (struct peer *)(void *)(addr - offsetof(struct peer, addr));
}

/*
 * The address's token bucket: rate per second, burst deep (rate 0: no
 * limit). An idle record that is used again moves to the end of the idle
 * list, so the one dropped first is the one quiet longest.
 */
bool peers_admit(struct hub *h, struct peer *p, double rate, double burst,
		 int64_t now_ms)
{
	if (rate <= 0)
		return true;
	if (!p->refill_ms)
		p->tokens = burst;
	else
		p->tokens += rate * (double)(now_ms - p->refill_ms) / 1000.0;
	if (p->tokens > burst)
		p->tokens = burst;
	p->refill_ms = now_ms ? now_ms : 1;
	if (!p->conns) {
		idle_unlink(h, p);
		idle_append(h, p);
	}
	if (p->tokens < 1.0)
		return false;
	p->tokens -= 1.0;
	return true;
}

void peers_release(struct hub *h)
{
	for (size_t i = 0; i < h->peers_size; i++) {
		struct peer *p = h->peers[i], *next;

		for (; p; p = next) {
			next = p->chain;
			free(p);
		}
	}
	free(h->peers);
	h->peers = NULL;
	h->peers_size = h->peers_used = h->n_idle = 0;
	h->idle_head = h->idle_tail = NULL;
}
