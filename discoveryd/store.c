/*
 * store: the one door for every call (store.h). A call goes to the store's
 * entry for its op, or else to the hub's (hub_ops); a write runs between
 * the store's begin and end (its Idempotency-Key). For a store whose state
 * is on the hub thread (the journal), all of that runs there, in one turn.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "store.h"

/*
 * A backend whose calls block (Redis: a script, then the wait for the
 * event to come back and for the other nodes' acks) would hold one of
 * libmicrohttpd's two threads per write, and two writes in flight cap
 * the rate at 2 / the round trip. Its writes go to a pool of
 * STORE_POOL_THREADS threads instead, each with its own connection, while
 * the HTTP connection waits suspended, as a journal's writes wait for
 * their group commit on the hub thread.
 */
#define STORE_POOL_THREADS 64

struct pool_job {
	struct hub_req *req;
	void (*done)(struct hub_req *req, void *arg);
	void *arg;
	struct pool_job *next;
};

struct store_pool {
	struct store *s;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct pool_job *head, *tail;
	bool stopping;
	bool shedding; /* store_shed */
	size_t n_threads;
	pthread_t threads[STORE_POOL_THREADS];
};

static void run(struct hub *h, void *arg, struct hub_req *req)
{
	struct store *s = arg;
	store_fn *fn = s->ops->call[req->op];
	bool write = hub_op_flags(req->op) & OP_WRITE;

	if (write && s->ops->begin && s->ops->begin(s, req))
		return;
	if (fn)
		fn(s, req);
	else if (h)
		hub_run_op(h, req); /* on the hub thread already */
	else
		hub_call(s->hub, req);
	if (write && s->ops->end)
		s->ops->end(s, req);
}

bool store_async(const struct store *s)
{
	return s->ops->on_hub_thread || s->pool;
}

static void *pool_thread(void *arg)
{
	struct store_pool *p = arg;
	bool shed;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct pool_job *j = p->head;

		if (!j) {
			if (p->stopping)
				break;
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		if (!(p->head = j->next))
			p->tail = NULL;
		shed = p->shedding;
		pthread_mutex_unlock(&p->mu);
		if (shed)
			hub_answer_error(j->req, 503, "stopping",
					 "the HTTP side is stopping (or taking "
					 "a new certificate): nothing was "
					 "changed, try again");
		else
			run(NULL, p->s, j->req);
		j->done(j->req, j->arg);
		free(j);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Queue req for the pool; false when it cannot take it (stopping, or no
 * memory): then the caller runs it. */
static bool pool_take(struct store_pool *p, struct hub_req *req,
		      void (*done)(struct hub_req *req, void *arg), void *arg)
{
	struct pool_job *j = malloc(sizeof(*j));
	bool taken = false;

	if (!j)
		return false;
	*j = (struct pool_job){ .req = req, .done = done, .arg = arg };
	pthread_mutex_lock(&p->mu);
	if (!p->stopping) {
		*(p->tail ? &p->tail->next : &p->head) = j;
		p->tail = j;
		taken = true;
		pthread_cond_signal(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	if (!taken)
		free(j);
	return taken;
}

static void pool_stop(struct store_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->stopping = true; /* what is queued still runs */
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

/* The pool of a backend whose calls block; without one (no memory, no
 * thread) its writes wait on the HTTP threads, as before. */
static void pool_start(struct store *s)
{
	struct store_pool *p = calloc(1, sizeof(*p));
	int rc = 0;

	if (!p)
		return;
	p->s = s;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	while (p->n_threads < STORE_POOL_THREADS &&
	       (rc = pthread_create(&p->threads[p->n_threads], NULL,
				    pool_thread, p)) == 0)
		p->n_threads++;
	if (rc != 0)
		log_warn("store", "note=\"%zu of %d write threads\" errno=%d",
			 p->n_threads, STORE_POOL_THREADS, rc);
	if (!p->n_threads) {
		pool_stop(p);
		return;
	}
	s->pool = p;
}

int store_start(struct store *s)
{
	int rc = s->ops->start ? s->ops->start(s) : 0;

	if (rc == 0 && !s->ops->on_hub_thread)
		pool_start(s);
	return rc;
}

void store_stop(struct store *s)
{
	if (!s)
		return;
	if (s->pool)
		pool_stop(s->pool);
	s->pool = NULL;
	if (s->ops->stop)
		s->ops->stop(s);
}

/*
 * A queue as long as the HTTP side's connections, each write a Redis
 * round trip or more, can take minutes to run out, and libmicrohttpd
 * aborts a stop that finds a connection still suspended: what has not
 * begun when the HTTP side stops is answered at once instead.
 */
void store_shed(struct store *s, bool on)
{
	struct store_pool *p = s->pool;

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->shedding = on;
	pthread_mutex_unlock(&p->mu);
}

void store_submit(struct store *s, struct hub_req *req,
		  void (*done)(struct hub_req *req, void *arg), void *arg)
{
	req->status = 0;
	req->body = NULL;
	req->replayed = false;
	if ((unsigned)req->op >= HUB_OPS || req->op == HUB_JOB) {
		hub_answer_error(req, 500, "internal", "no such call");
		done(req, arg);
		return;
	}
	if (s->ops->on_hub_thread) {
		hub_submit(s->hub, run, s, req, done, arg);
		return;
	}
	if (!s->pool || !pool_take(s->pool, req, done, arg)) {
		run(NULL, s, req);
		done(req, arg);
	}
}

void store_call(struct store *s, struct hub_req *req)
{
	req->status = 0;
	req->body = NULL;
	req->replayed = false;
	if ((unsigned)req->op >= HUB_OPS || req->op == HUB_JOB) {
		hub_answer_error(req, 500, "internal", "no such call");
	} else if (s->ops->on_hub_thread) {
		hub_run(s->hub, run, s, req);
	} else {
		run(NULL, s, req);
	}
	cJSON_Delete(req->header);
	cJSON_Delete(req->value);
	req->header = req->value = NULL;
}
