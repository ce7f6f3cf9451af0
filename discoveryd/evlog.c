/*
 * evlog: the in-memory log backend. A fixed ring of event references; the
 * epoch is 128 random bits in hex, drawn at start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "evlog.h"

static void new_epoch(char *out, size_t size)
{
	unsigned char raw[16];
	size_t off = 0;

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		/* The kernel always has 16 bytes for us after boot; fall back
		 * to the clock and pid rather than failing start-up. */
		unsigned long long t = (unsigned long long)time(NULL);

		memcpy(raw, &t, sizeof(t));
		t ^= (unsigned long long)getpid() << 32;
		memcpy(raw + 8, &t, sizeof(t));
	}
	for (size_t i = 0; i < sizeof(raw) && off + 2 < size; i++)
		off += (size_t)snprintf(out + off, size - off, "%02x", raw[i]);
}

int evlog_init(struct evlog *log, size_t history)
{
	memset(log, 0, sizeof(*log));
	log->ring = calloc(history, sizeof(*log->ring));
	if (!log->ring)
		return -1;
	log->cap = history;
	new_epoch(log->epoch, sizeof(log->epoch));
	return 0;
}

void evlog_release(struct evlog *log)
{
	for (size_t i = 0; i < log->count; i++)
		event_unref(evlog_at(log, i));
	free(log->ring);
	memset(log, 0, sizeof(*log));
}

int evlog_append(struct evlog *log, struct event *ev)
{
	if (event_seal(ev, log->epoch, log->seq + 1) != 0)
		return -1;
	log->seq++;
	if (log->count == log->cap) {
		event_unref(log->ring[log->head]);
		log->ring[log->head] = event_ref(ev);
		log->head = (log->head + 1) % log->cap;
	} else {
		log->ring[(log->head + log->count) % log->cap] = event_ref(ev);
		log->count++;
	}
	return 0;
}

struct event *evlog_at(const struct evlog *log, size_t i)
{
	if (i >= log->count)
		return NULL;
	return log->ring[(log->head + i) % log->cap];
}

bool evlog_covers(const struct evlog *log, const char *epoch, uint64_t seq)
{
	struct event *oldest;

	if (strcmp(epoch, log->epoch) != 0 || seq > log->seq)
		return false;
	if (seq == log->seq)
		return true;
	oldest = evlog_at(log, 0);
	return oldest && oldest->seq <= seq + 1;
}

size_t evlog_find_after(const struct evlog *log, uint64_t after)
{
	size_t lo = 0, hi = log->count;

	/* Seqs in the ring increase: binary search. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (evlog_at(log, mid)->seq <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}
