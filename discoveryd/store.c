/*
 * store: the one door for every call (store.h). A call goes to the store's
 * entry for its op, or else to the hub's (hub_ops); a write runs between
 * the store's begin and end (its Idempotency-Key). For a store whose state
 * is on the hub thread (the journal), all of that runs there, in one turn.
 */
#include <stdlib.h>

#include "store.h"

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
	return s->ops->on_hub_thread;
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
	hub_submit(s->hub, run, s, req, done, arg);
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
