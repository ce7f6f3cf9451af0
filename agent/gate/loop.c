/*
 * loop: epoll and a clock (see loop.h).
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "loop.h"

#define MAX_EVENTS 64

int loop_init(struct loop *l)
{
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->due_ms = loop_now_ms() + 1000;
	l->dead = NULL;
	l->dead_tail = &l->dead;
	l->soon = NULL;
	l->soon_tail = &l->soon;
	return l->epfd < 0 ? -1 : 0;
}

static void reap(struct loop *l);

void loop_release(struct loop *l)
{
	reap(l);
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
}

void loop_set(struct loop *l, struct watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };
	int op;

	if (w->events == events || w->fd < 0)
		return;
	op = !w->events ? EPOLL_CTL_ADD :
	     events     ? EPOLL_CTL_MOD :
			  EPOLL_CTL_DEL;
	if (epoll_ctl(l->epfd, op, w->fd, &ev) && errno != ENOENT)
		log_warn("epoll_failed", "fd=%d error=%s", w->fd,
			 strerror(errno));
	w->events = events;
}

void loop_retire(struct loop *l, struct watch *w)
{
	if (!w->fn)
		return;
	loop_set(l, w, 0);
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	w->fn = NULL;
	w->next_dead = NULL;
	*l->dead_tail = w;
	l->dead_tail = &w->next_dead;
}

/* Free what was retired; a release may retire more. */
static void reap(struct loop *l)
{
	while (l->dead) {
		struct watch *w = l->dead;

		l->dead = w->next_dead;
		if (!l->dead)
			l->dead_tail = &l->dead;
		if (w->release)
			w->release(w);
	}
}

long long loop_now_ms(void)
{
	return clock_mono_ms();
}

void loop_due(struct loop *l, long long when)
{
	if (l->due_ms > when)
		l->due_ms = when;
}

void loop_soon(struct loop *l, struct soon *s)
{
	if (s->queued)
		return;
	s->queued = true;
	s->next = NULL;
	*l->soon_tail = s;
	l->soon_tail = &s->next;
}

void loop_run_soon(struct loop *l)
{
	while (l->soon) {
		struct soon *s = l->soon;

		l->soon = s->next;
		if (!l->soon)
			l->soon_tail = &l->soon;
		s->queued = false;
		s->fn(s);
	}
}

void loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event evs[MAX_EVENTS];
	long long left = l->due_ms - loop_now_ms();
	int k;

	if (left < timeout_ms)
		timeout_ms = left < 0 ? 0 : (int)left;
	k = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout_ms);
	for (int i = 0; i < k; i++) {
		struct watch *w = evs[i].data.ptr;

		if (w->fn)
			w->fn(w, evs[i].events);
	}
	loop_run_soon(l);
	reap(l);
}
