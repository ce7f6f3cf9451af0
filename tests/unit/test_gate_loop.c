/*
 * test_gate_loop: the gate's event loop (agent/gate/loop.c), and what it
 * puts off to the end of a pass (loop_soon), over real pipes.
 *
 * Work put off runs once however often it is queued, in the order it was
 * first queued, after every callback of the batch has run (so that a
 * callback that queues a send never sends before the rest of the batch is
 * read), and before what the batch retired is released (so that what
 * holds it is still there). Work queued while the queue runs runs in the
 * same pass; and without a pass, loop_run_soon runs what is queued.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "../../agent/gate/loop.h"

#define N 3

/* A readable pipe whose callback reads it and queues its "send". */
struct side {
	struct watch watch; /* first */
	struct soon soon;
	int wr;
	int id;
	bool released;
};

static struct loop L;
static int order[32], n_order; /* >0: a callback; <0: a send; 100: a release */
static struct side *again;     /* queued once more from its own send */

static void note(int what)
{
	assert_true(n_order < (int)(sizeof(order) / sizeof(order[0])));
	order[n_order++] = what;
}

static void on_send(struct soon *s)
{
	struct side *d =
		(struct side *)((char *)s - offsetof(struct side, soon));

	assert_false(d->released);
	note(-d->id);
	if (d == again) {
		again = NULL;
		loop_soon(&L, &d->soon);
	}
}

static void on_readable(struct watch *w, uint32_t events)
{
	struct side *d = (struct side *)w;
	char c;

	(void)events;
	assert_int_equal(read(w->fd, &c, 1), 1);
	note(d->id);
	loop_soon(&L, &d->soon);
	loop_soon(&L, &d->soon); /* twice: still once */
	if (d->id == 2)
		loop_retire(&L, w); /* released after its send ran */
}

static void on_release(struct watch *w)
{
	((struct side *)w)->released = true;
	note(100);
}

static void open_side(struct side *d, int id)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	memset(d, 0, sizeof(*d));
	d->watch = (struct watch){ .fd = p[0],
				   .fn = on_readable,
				   .release = on_release };
	d->soon.fn = on_send;
	d->wr = p[1];
	d->id = id;
	loop_set(&L, &d->watch, EPOLLIN);
	assert_int_equal(write(d->wr, "x", 1), 1);
}

static void close_side(struct side *d)
{
	if (d->watch.fn)
		loop_retire(&L, &d->watch);
	close(d->wr);
}

static void test_sends_follow_the_batch(void **state)
{
	struct side d[N];
	int callbacks = 0, sends = 0, first_send = -1, release = -1;

	(void)state;
	assert_int_equal(loop_init(&L), 0);
	for (int i = 0; i < N; i++)
		open_side(&d[i], i + 1);
	again = &d[0];
	n_order = 0;
	loop_run_once(&L, 1000);
	/* 3 callbacks, 3 sends and one more for d[0], then the release. */
	assert_int_equal(n_order, 2 * N + 2);
	for (int i = 0; i < n_order; i++) {
		if (order[i] > 0 && order[i] < 100) {
			callbacks++;
			assert_int_equal(first_send,
					 -1); /* no callback after a send */
		} else if (order[i] < 0) {
			if (first_send < 0)
				first_send = i;
			sends++;
		} else {
			release = i;
		}
	}
	assert_int_equal(callbacks, N);
	assert_int_equal(sends, N + 1);
	assert_int_equal(release, n_order - 1);
	/* Sends in the order of the callbacks that queued them; the one
	 * queued again from the queue, last. */
	for (int i = 0; i < N; i++)
		assert_int_equal(order[first_send + i], -order[i]);
	assert_int_equal(order[first_send + N], -1);
	assert_true(d[1].released);
	for (int i = 0; i < N; i++)
		close_side(&d[i]);
	loop_release(&L);
}

static void test_run_soon_without_a_pass(void **state)
{
	struct side d;

	(void)state;
	assert_int_equal(loop_init(&L), 0);
	memset(&d, 0, sizeof(d));
	d.soon.fn = on_send;
	d.id = 7;
	n_order = 0;
	loop_soon(&L, &d.soon);
	loop_soon(&L, &d.soon);
	loop_run_soon(&L);
	assert_int_equal(n_order, 1);
	assert_int_equal(order[0], -7);
	loop_run_soon(&L); /* nothing left */
	assert_int_equal(n_order, 1);
	loop_release(&L);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sends_follow_the_batch),
		cmocka_unit_test(test_run_soon_without_a_pass),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
