/*
 * peers: how many links each source address holds, for
 * limits.max_agents_per_ip. An open-addressing table keyed by the address
 * text; a count that drops to zero leaves its slot as is (reused by the same
 * address, and rebuilt away when the table grows), so lookups never stop
 * early at a hole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub_int.h"

static size_t slot_of(const char *peer, size_t size)
{
	uint64_t x = 1469598103934665603ULL;     /* FNV-1a */

	for (const char *p = peer; *p; p++)
		x = (x ^ (unsigned char)*p) * 1099511628211ULL;
	return (size_t)x & (size - 1);
}

static struct peer_count *find(struct peer_count *t, size_t size,
			       const char *peer)
{
	size_t i = slot_of(peer, size);

	while (t[i].peer[0] && strcmp(t[i].peer, peer) != 0)
		i = (i + 1) & (size - 1);
	return &t[i];
}

/* Double the table (dropping addresses that hold no links). */
static int grow(struct hub *h)
{
	size_t size = h->peers_size ? h->peers_size * 2 : 256;
	struct peer_count *t = calloc(size, sizeof(*t));

	if (!t)
		return -1;
	h->peers_used = 0;
	for (size_t i = 0; i < h->peers_size; i++)
		if (h->peers[i].links) {
			*find(t, size, h->peers[i].peer) = h->peers[i];
			h->peers_used++;
		}
	free(h->peers);
	h->peers = t;
	h->peers_size = size;
	return 0;
}

unsigned peers_add(struct hub *h, const char *peer)
{
	struct peer_count *p;

	if ((h->peers_used + 1) * 2 > h->peers_size && grow(h) != 0)
		return 0;      /* out of memory: do not count, do not refuse */
	p = find(h->peers, h->peers_size, peer);
	if (!p->peer[0]) {
		strncpy(p->peer, peer, sizeof(p->peer) - 1);
		h->peers_used++;
	}
	return ++p->links;
}

void peers_remove(struct hub *h, const char *peer)
{
	struct peer_count *p;

	if (!h->peers_size)
		return;
	p = find(h->peers, h->peers_size, peer);
	if (p->peer[0] && p->links)
		p->links--;
}

void peers_release(struct hub *h)
{
	free(h->peers);
	h->peers = NULL;
	h->peers_size = h->peers_used = 0;
}
