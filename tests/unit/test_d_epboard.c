/*
 * test_d_epboard: the endpoint board (discoveryd/epboard.c). A set is
 * copied whole and sorted, its hosts parsed; a reader's reference outlives
 * a newer publish; a waiter fires once, when its own service's index
 * passes its own, never for another service's; cancel stops it firing;
 * every set at once comes sorted by service, each held.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "../../discoveryd/epboard.h"

static struct epset *make(const char *service, uint64_t index, size_t n)
{
	static const char *const tags[] = { "blue", "eu" };
	struct ep src[3] = {
		{ .instance = "b",
		  .address = "[2001:db8::5]:80",
		  .node = "n1",
		  .state = PROTO_STATE_READY,
		  .weight = 100,
		  .load = -1 },
		{ .instance = "a",
		  .address = "10.0.0.1:8080",
		  .node = "n1",
		  .meta = "{\"zone\":\"a\"}",
		  .tags = tags,
		  .n_tags = 2,
		  .state = PROTO_STATE_DRAINING,
		  .weight = 7,
		  .load = 4200 },
		{ .instance = "c",
		  .address = "api.example:443",
		  .node = "n0",
		  .state = PROTO_STATE_READY,
		  .weight = 1,
		  .load = 0 },
	};

	return epset_new(service, index, src, n);
}

static void test_set_is_copied_sorted_and_parsed(void **state)
{
	struct epset *s = make("api", 7, 3);

	(void)state;
	assert_non_null(s);
	assert_int_equal(s->n, 3);
	assert_int_equal(s->n_ready, 2);
	assert_string_equal(s->ep[0].instance, "c"); /* node n0 first */
	assert_string_equal(s->ep[1].instance, "a");
	assert_string_equal(s->ep[2].instance, "b");
	assert_int_equal(s->ep[0].family, 0);
	assert_string_equal(s->ep[0].host, "api.example");
	assert_int_equal(s->ep[0].port, 443);
	assert_int_equal(s->ep[1].family, AF_INET);
	assert_int_equal(s->ep[1].port, 8080);
	assert_memory_equal(s->ep[1].ip, "\x0a\x00\x00\x01", 4);
	assert_string_equal(s->ep[1].tags[1], "eu");
	assert_string_equal(s->ep[1].meta, "{\"zone\":\"a\"}");
	assert_string_equal(s->ep[2].meta, "{}");
	assert_int_equal(s->ep[2].family, AF_INET6);
	assert_string_equal(s->ep[2].host, "2001:db8::5");
	epset_put(s);
}

static void test_reader_keeps_its_set(void **state)
{
	struct epboard *b = epboard_new();
	struct epset *got;

	(void)state;
	assert_null(epboard_get(b, "api"));
	epboard_publish(b, make("api", 1, 2));
	got = epboard_get(b, "api");
	assert_non_null(got);
	epboard_publish(b, make("api", 2, 3));
	assert_int_equal(got->index, 1); /* still whole: ASan would see */
	assert_int_equal(got->n, 2);
	epset_put(got);
	got = epboard_get(b, "api");
	assert_int_equal(got->index, 2);
	epset_put(got);
	epboard_forget(b, "api");
	assert_null(epboard_get(b, "api"));
	epboard_free(b);
}

static void fired(void *arg)
{
	(*(int *)arg)++;
}

static void test_waiters_fire_once_for_their_service(void **state)
{
	struct epboard *b = epboard_new();
	int on_api = 0, on_web = 0, now = 0, err = 1;
	struct epwaiter *wa, *ww, *wn;

	(void)state;
	epboard_publish(b, make("api", 10, 1));
	wa = epboard_wait(b, "api", 10, fired, &on_api, &err);
	assert_non_null(wa);
	assert_int_equal(err, 0);
	ww = epboard_wait(b, "web", 0, fired, &on_web, &err);
	assert_non_null(ww); /* web has no set yet */
	wn = epboard_wait(b, "api", 9, fired, &now, &err);
	assert_null(wn); /* passed already: ran at once */
	assert_int_equal(err, 0);
	assert_int_equal(now, 1);
	assert_int_equal(epboard_waiters(b), 2);

	for (uint64_t i = 11; i < 20; i++)
		epboard_publish(b, make("api", i, 1));
	assert_int_equal(on_api, 1);
	assert_int_equal(on_web, 0); /* api's changes never woke it */
	epboard_cancel(b, wa);       /* fired: frees it alone */
	epboard_cancel(b, ww);       /* never fired, never will */
	epboard_publish(b, make("web", 1, 1));
	assert_int_equal(on_web, 0);
	assert_int_equal(epboard_waiters(b), 0);

	wa = epboard_wait(b, "api", 100, fired, &on_api, &err);
	epboard_forget(b, "api"); /* its service went: woken */
	assert_int_equal(on_api, 2);
	epboard_cancel(b, wa);
	epboard_free(b);
}

static void test_all_sets_sorted_and_held(void **state)
{
	struct epboard *b = epboard_new();
	struct epset **sets;
	struct epwaiter *w;
	int err, n = 0;

	(void)state;
	assert_int_equal(epboard_all(b, &sets), 0);
	free(sets);
	epboard_publish(b, make("web", 1, 1));
	epboard_publish(b, make("api", 2, 3));
	epboard_publish(b, make("db", 3, 0));
	/* A slot with a waiter and no set is no service yet. */
	w = epboard_wait(b, "cache", 0, fired, &n, &err);
	assert_non_null(w);
	assert_int_equal(epboard_all(b, &sets), 3);
	assert_string_equal(sets[0]->service, "api");
	assert_string_equal(sets[1]->service, "db");
	assert_string_equal(sets[2]->service, "web");
	epboard_forget(b, "api");
	assert_int_equal(sets[0]->n, 3); /* held: still whole */
	for (int i = 0; i < 3; i++)
		epset_put(sets[i]);
	free(sets);
	epboard_cancel(b, w);
	epboard_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_is_copied_sorted_and_parsed),
		cmocka_unit_test(test_reader_keeps_its_set),
		cmocka_unit_test(test_waiters_fire_once_for_their_service),
		cmocka_unit_test(test_all_sets_sorted_and_held),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
