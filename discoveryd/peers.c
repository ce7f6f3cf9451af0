/*
 * peers: what each source address holds and may do at the agent listener:
 * its open connections, counted from the accept whether or not they ever
 * upgrade (limits.max_agents_per_ip), and its own accept-rate bucket
 * (limits.accept_share_per_ip). A hash table of records keyed by the
 * address text (htab.h, seeded so that chains cannot be aimed at); hub
 * thread only.
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

#include "hub_int.h"

#define PEERS_IDLE_MAX 16384

struct peer {
	struct hnode node;                  /* in hub->peers, by addr */
	struct peer *idle_prev, *idle_next; /* while it holds nothing */
	unsigned conns;           /* connections open, upgraded or not */
	double tokens;            /* its accept bucket */
	int64_t refill_ms;        /* 0 = never used: a full bucket */
	char addr[LINK_PEER_MAX]; /* what links keep (peer_of_addr) */
};

static void idle_unlink(struct hub *h, struct peer *p)
{
	*(p->idle_prev ? &p->idle_prev->idle_next : &h->idle_head) =
		p->idle_next;
	*(p->idle_next ? &p->idle_next->idle_prev : &h->idle_tail) =
		p->idle_prev;
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
	htab_remove(&h->peers, &p->node);
	idle_unlink(h, p);
	free(p);
}

struct peer *peers_get(struct hub *h, const char *addr)
{
	uint64_t hv = htab_hash(&h->peers, addr);
	struct peer *p;

	for (struct hnode *n = htab_first(&h->peers, hv); n;
	     n = htab_next(n, hv)) {
		p = htab_entry(n, struct peer, node);
		if (strcmp(p->addr, addr) == 0)
			return p;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	if (htab_add(&h->peers, &p->node, hv) != 0) {
		free(p);
		return NULL;
	}
	idle_append(h, p);
	if (h->n_idle > PEERS_IDLE_MAX)
		drop(h, h->idle_head); /* never p: it is the newest */
	return p;
}

void peers_hold(struct hub *h, struct peer *p)
{
	h->n_conns++;
	if (p->conns++ == 0)
		idle_unlink(h, p);
}

void peers_put(struct hub *h, struct peer *p)
{
	h->n_conns--;
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
	struct hnode *n;

	while ((n = htab_pop(&h->peers)))
		free(htab_entry(n, struct peer, node));
	htab_release(&h->peers);
	h->n_idle = 0;
	h->idle_head = h->idle_tail = NULL;
}
