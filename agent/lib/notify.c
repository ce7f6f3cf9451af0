/*
 * notify: how the agent thread tells the application.
 *
 * With AGENT_DISPATCH_THREAD a notification is a plain call on the agent
 * thread. With AGENT_DISPATCH_HOST it is deep-copied into one allocation (a
 * struct pending with its strings after it), appended to a mutex-guarded
 * queue, and an eventfd is bumped; agent_dispatch() on the host's thread
 * takes the whole queue at once and makes the calls there.
 *
 * The queue is bounded without losing events: past queue_max the link stops
 * reading (link.c pauses rx), so the backlog stays in the daemon, which
 * drops a link that lags too far and replays to it on resume. Log lines are
 * the only thing ever dropped, past queue_max + LOG_SLACK (counted, and
 * reported by the next agent_dispatch).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "agent_int.h"

enum pending_type {
	PENDING_READINESS = 1,
	PENDING_EVENT,
	PENDING_LINK,
	PENDING_LOG,
	PENDING_ENDPOINTS,
};

/* Log lines may exceed queue_max by this much before they are dropped, so
 * the line that says reading paused still gets through. */
#define LOG_SLACK 64

struct pending {
	struct pending *next;
	enum pending_type type;
	enum agent_link_state state;
	enum agent_log_level level;
	const char *service;     /* READINESS */
	const char *line;        /* LOG */
	struct watch_slot *slot; /* ENDPOINTS */
	bool ready;
	struct agent_event ev;
	struct agent_link_info link;
	/* strings and the keys array follow */
};

/* A bump allocator over the bytes after a struct pending. */
struct arena {
	char *p;
	size_t left;
};

static size_t str_size(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

static const char *arena_put(struct arena *ar, const char *s)
{
	size_t n = str_size(s);
	char *dst;

	if (!s || n > ar->left)
		return NULL;
	dst = ar->p;
	memcpy(dst, s, n);
	ar->p += n;
	ar->left -= n;
	return dst;
}

int notify_init(struct agent *a)
{
	a->efd = -1;
	if (pthread_mutex_init(&a->q_mu, NULL))
		return AGENT_E_SYS;
	if (a->dispatch != AGENT_DISPATCH_HOST)
		return 0;
	a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->efd < 0) {
		pthread_mutex_destroy(&a->q_mu);
		return AGENT_E_SYS;
	}
	return 0;
}

void notify_release(struct agent *a)
{
	struct pending *p = a->q_head, *next;

	for (; p; p = next) {
		next = p->next;
		free(p);
	}
	a->q_head = a->q_tail = NULL;
	a->q_len = 0;
	if (a->efd >= 0)
		close(a->efd);
	a->efd = -1;
	pthread_mutex_destroy(&a->q_mu);
}

bool notify_queue_full(struct agent *a)
{
	bool full;

	if (a->dispatch != AGENT_DISPATCH_HOST)
		return false;
	pthread_mutex_lock(&a->q_mu);
	full = a->q_len >= a->queue_max;
	pthread_mutex_unlock(&a->q_mu);
	return full;
}

/* Append p (or drop it if it is a log line and the queue is full). */
static void enqueue(struct agent *a, struct pending *p)
{
	uint64_t one = 1;
	bool was_empty;

	pthread_mutex_lock(&a->q_mu);
	if (p->type == PENDING_LOG && a->q_len >= a->queue_max + LOG_SLACK) {
		a->q_dropped++;
		pthread_mutex_unlock(&a->q_mu);
		free(p);
		return;
	}
	p->next = NULL;
	if (a->q_tail)
		a->q_tail->next = p;
	else
		a->q_head = p;
	a->q_tail = p;
	was_empty = a->q_len++ == 0;
	pthread_mutex_unlock(&a->q_mu);
	/* Only the first entry of a batch signals: agent_dispatch drains the
	 * eventfd before it takes the queue, so a later batch signals again. */
	if (was_empty && write(a->efd, &one, sizeof(one)) < 0) {
		/* Only EAGAIN: the counter is saturated, so the fd is readable
		 * anyway. (q_dropped is the queue's, under q_mu: not here.) */
	}
}

static struct pending *pending_new(enum pending_type type, size_t extra,
				   struct arena *ar)
{
	struct pending *p = calloc(1, sizeof(*p) + extra);

	if (!p)
		return NULL;
	p->type = type;
	ar->p = (char *)(p + 1);
	ar->left = extra;
	return p;
}

static void run(struct agent *a, const struct pending *p)
{
	const struct agent_callbacks *cb = &a->cb;

	switch (p->type) {
	case PENDING_READINESS:
		if (cb->on_readiness)
			cb->on_readiness(a, p->service, p->ready, cb->ud);
		break;
	case PENDING_EVENT:
		if (cb->on_event)
			cb->on_event(a, &p->ev, cb->ud);
		break;
	case PENDING_LINK:
		if (cb->on_link)
			cb->on_link(a, p->state, &p->link, cb->ud);
		break;
	case PENDING_LOG:
		if (cb->on_log)
			cb->on_log(p->level, p->line, cb->ud);
		break;
	case PENDING_ENDPOINTS: {
		/* The newest set at the time it runs: one call for however
		 * many changes came while it was queued. */
		const struct agent_endpoints *set;

		atomic_store(&p->slot->queued, false);
		if ((set = agent_endpoints(a, p->slot->name))) {
			cb->on_endpoints(a, set, cb->ud);
			agent_endpoints_release(a, set);
		}
		break;
	}
	}
}

void notify_log(struct agent *a, enum agent_log_level level, const char *fmt,
		...)
{
	char line[LOG_LINE_MAX];
	struct pending *p;
	struct arena ar;
	va_list ap;

	if (!a->cb.on_log || (int)level > atomic_load(&a->log_level) ||
	    a->link.destroying)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);

	if (a->dispatch == AGENT_DISPATCH_THREAD) {
		a->cb.on_log(level, line, a->cb.ud);
		return;
	}
	p = pending_new(PENDING_LOG, str_size(line), &ar);
	if (!p)
		return;
	p->level = level;
	p->line = arena_put(&ar, line);
	enqueue(a, p);
}

void notify_readiness(struct agent *a, const char *service, bool ready)
{
	struct pending *p;
	struct arena ar;

	notify_log(a, AGENT_LOG_INFO, "readiness service=%s ready=%s", service,
		   ready ? "true" : "false");
	if (!a->cb.on_readiness || a->link.destroying)
		return;
	if (a->dispatch == AGENT_DISPATCH_THREAD) {
		a->cb.on_readiness(a, service, ready, a->cb.ud);
		return;
	}
	p = pending_new(PENDING_READINESS, str_size(service), &ar);
	if (!p)
		return;
	p->service = arena_put(&ar, service);
	p->ready = ready;
	enqueue(a, p);
}

void notify_event(struct agent *a, const struct agent_event *ev)
{
	struct agent_event *e;
	struct pending *p;
	struct arena ar;
	const char **keys;
	size_t extra, keys_bytes = ev->n_keys * sizeof(char *);

	if (!a->cb.on_event || a->link.destroying)
		return;
	if (a->dispatch == AGENT_DISPATCH_THREAD) {
		a->cb.on_event(a, ev, a->cb.ud);
		return;
	}
	extra = keys_bytes + str_size(ev->kind) + str_size(ev->epoch) +
		str_size(ev->command) + str_size(ev->header) +
		str_size(ev->value) + str_size(ev->json) +
		str_size(ev->service);
	for (size_t i = 0; i < ev->n_keys; i++)
		extra += str_size(ev->keys[i]);
	p = pending_new(PENDING_EVENT, extra, &ar);
	if (!p) {
		notify_log(a, AGENT_LOG_ERROR, "out_of_memory seq=%llu",
			   (unsigned long long)ev->seq);
		return;
	}
	/* The keys array first: the arena starts pointer-aligned. */
	keys = (const char **)(void *)ar.p;
	ar.p += keys_bytes;
	ar.left -= keys_bytes;
	e = &p->ev;
	*e = *ev;
	e->kind = arena_put(&ar, ev->kind);
	e->epoch = arena_put(&ar, ev->epoch);
	e->command = arena_put(&ar, ev->command);
	e->header = arena_put(&ar, ev->header);
	e->value = arena_put(&ar, ev->value);
	e->json = arena_put(&ar, ev->json);
	e->service = arena_put(&ar, ev->service);
	for (size_t i = 0; i < ev->n_keys; i++)
		keys[i] = arena_put(&ar, ev->keys[i]);
	e->keys = ev->n_keys ? keys : NULL;
	enqueue(a, p);
}

void notify_link(struct agent *a, enum agent_link_state state,
		 const struct agent_link_info *info)
{
	struct agent_link_info *l;
	struct pending *p;
	struct arena ar;

	if (!a->cb.on_link || a->link.destroying)
		return;
	if (a->dispatch == AGENT_DISPATCH_THREAD) {
		a->cb.on_link(a, state, info, a->cb.ud);
		return;
	}
	p = pending_new(PENDING_LINK,
			str_size(info->url) + str_size(info->node) +
				str_size(info->epoch) + str_size(info->reason),
			&ar);
	if (!p)
		return;
	p->state = state;
	l = &p->link;
	*l = *info;
	l->url = arena_put(&ar, info->url);
	l->node = arena_put(&ar, info->node);
	l->epoch = arena_put(&ar, info->epoch);
	l->reason = arena_put(&ar, info->reason);
	enqueue(a, p);
}

void notify_endpoints(struct agent *a, struct watch_slot *s)
{
	const struct agent_endpoints *set;
	struct pending *p;
	struct arena ar;

	if (!a->cb.on_endpoints || a->link.destroying)
		return;
	if (a->dispatch == AGENT_DISPATCH_THREAD) {
		/* The agent thread's own newest set: nothing frees it while
		 * the callback runs on this thread. */
		set = (const struct agent_endpoints *)(void *)s->latest;
		a->cb.on_endpoints(a, set, a->cb.ud);
		return;
	}
	if (atomic_exchange(&s->queued, true))
		return; /* one is queued already; it will read the newest */
	if (!(p = pending_new(PENDING_ENDPOINTS, 0, &ar))) {
		atomic_store(&s->queued, false);
		return;
	}
	p->slot = s;
	enqueue(a, p);
}

int agent_fd(agent_t *a)
{
	if (!a)
		return AGENT_E_INVALID;
	if (a->dispatch != AGENT_DISPATCH_HOST)
		return AGENT_E_NOTHOST;
	return a->efd;
}

int agent_dispatch(agent_t *a)
{
	struct pending *p, *next;
	uint64_t count, dropped;
	int ran = 0;

	if (!a)
		return AGENT_E_INVALID;
	if (a->dispatch != AGENT_DISPATCH_HOST)
		return AGENT_E_NOTHOST;
	/* Clear the eventfd before taking the queue: an enqueue that lands
	 * after the take bumps it again, so nothing is left unsignalled. */
	if (read(a->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return AGENT_E_SYS;

	pthread_mutex_lock(&a->q_mu);
	p = a->q_head;
	a->q_head = a->q_tail = NULL;
	a->q_len = 0;
	dropped = a->q_dropped;
	a->q_dropped = 0;
	pthread_mutex_unlock(&a->q_mu);

	if (dropped && a->cb.on_log) {
		char line[96];

		snprintf(line, sizeof(line), "log_lines_dropped count=%llu",
			 (unsigned long long)dropped);
		a->cb.on_log(AGENT_LOG_WARN, line, a->cb.ud);
	}
	for (; p; p = next) {
		next = p->next;
		run(a, p);
		free(p);
		ran++;
	}
	/* Reading may have been paused on a full queue: let the agent thread
	 * resume it. */
	if (atomic_load(&a->started)) {
		atomic_store(&a->rx_resume, true);
		lws_cancel_service(a->ctx);
	}
	return ran;
}
