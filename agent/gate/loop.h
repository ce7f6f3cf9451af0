/*
 * loop: one worker thread's event loop, the lowest layer of the gate: an
 * epoll set whose entries are `struct watch`es (a descriptor and the
 * function its events go to), a clock, and the time by which the owner
 * wants to look at its deadlines. It knows nothing of HTTP: the client
 * side, the upstream side and the relay each register their sockets with
 * their own callbacks, so none of them has to know the others' types to
 * be woken.
 *
 * Sends wait for the end of a pass (`struct soon`): each callback reads
 * and parses what its socket has and queues what is to go out, and the
 * sends run after the whole batch, in the order they were queued. A send
 * that wakes the peer (wrk, the app) can hand it the core at once (CFS
 * wakeup preemption); sent as each event is handled, the rest of the
 * batch would wait behind it, read but not yet looked at. HAProxy's I/O
 * callbacks likewise only queue tasklets that run after the poll batch.
 * A lone event's sends still leave in the same pass, right after it.
 */
#ifndef GATE_LOOP_H
#define GATE_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct watch;
typedef void (*watch_fn)(struct watch *w, uint32_t events);

struct watch {
	int fd;
	uint32_t events; /* registered interest; 0: not in the set */
	watch_fn fn;     /* NULL once retired */
	void (*release)(struct watch *w); /* frees what holds w */
	struct watch *next_dead;
};

/* Work put off to the end of the pass (loop_soon). */
struct soon {
	void (*fn)(struct soon *s);
	struct soon *next;
	bool queued;
};

struct loop {
	int epfd;
	struct soon *soon; /* to run at the end of the pass, oldest first */
	struct soon **soon_tail;
	long long due_ms;   /* look at deadlines by then */
	struct watch *dead; /* retired in this batch of events, oldest first */
	struct watch **dead_tail;
};

int loop_init(struct loop *l);
void loop_release(struct loop *l);

/* Register, change or (events 0) remove w's interest. Level-triggered;
 * a change to the same set is no system call. */
void loop_set(struct loop *l, struct watch *w, uint32_t events);

/* w is done with: its descriptor is closed, it gets no more events, and
 * w->release(w) runs after the current batch of events, one of which may still
 * name it. */
void loop_retire(struct loop *l, struct watch *w);

/* Wait up to timeout_ms (or until due_ms), run the callbacks of what is
 * ready, then what they put off (loop_run_soon). */
void loop_run_once(struct loop *l, int timeout_ms);

/* Run s->fn at the end of this pass (once, however often it is queued).
 * What holds s must stay until then: a retired watch is released only
 * after it. */
void loop_soon(struct loop *l, struct soon *s);
/* Run what was put off, and what that puts off in turn. */
void loop_run_soon(struct loop *l);

long long loop_now_ms(void);
/* The owner wants to look at its deadlines by `when` at the latest. */
void loop_due(struct loop *l, long long when);

#endif
