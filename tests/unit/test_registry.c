/*
 * Unit tests for the registry: lookup order, declared versus derived
 * readiness, min_ready, TTL expiry and when a service may be dropped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../discoveryd/registry.h"

static void test_get_find_sorted(void **state)
{
	struct registry r;

	(void)state;
	registry_init(&r, 10);
	assert_null(registry_find(&r, "web"));
	assert_non_null(registry_get(&r, "web"));
	assert_non_null(registry_get(&r, "api"));
	assert_non_null(registry_get(&r, "cache"));
	assert_ptr_equal(registry_get(&r, "web"), registry_find(&r, "web"));
	assert_int_equal(r.n, 3);
	assert_string_equal(r.services[0]->name, "api");
	assert_string_equal(r.services[1]->name, "cache");
	assert_string_equal(r.services[2]->name, "web");
	registry_release(&r);
}

static void test_cap(void **state)
{
	struct registry r;

	(void)state;
	registry_init(&r, 2);
	assert_non_null(registry_get(&r, "a"));
	assert_non_null(registry_get(&r, "b"));
	assert_null(registry_get(&r, "c"));
	assert_non_null(registry_get(&r, "a"));
	registry_release(&r);
}

static void test_derived_and_declared(void **state)
{
	struct registry r;
	struct service *s;

	(void)state;
	registry_init(&r, 10);
	s = registry_get(&r, "cache");
	assert_false(service_computed_ready(s));
	s->instances = 2;
	s->ready_instances = 1;
	assert_true(service_computed_ready(s));
	s->min_ready = 2;
	assert_false(service_computed_ready(s));
	s->ready_instances = 2;
	assert_true(service_computed_ready(s));
	s->declared = DECL_NOTREADY; /* maintenance wins */
	assert_false(service_computed_ready(s));
	s->declared = DECL_READY;
	s->ready_instances = 0;
	assert_true(service_computed_ready(s));
	assert_string_equal(declaration_name(DECL_READY), "ready");
	assert_null(declaration_name(DECL_NONE));
	registry_release(&r);
}

static void test_expiry(void **state)
{
	struct registry r;
	struct service *a, *b;

	(void)state;
	registry_init(&r, 10);
	a = registry_get(&r, "a");
	b = registry_get(&r, "b");
	a->declared = DECL_READY;
	a->expires_ms = 1000;
	b->declared = DECL_NOTREADY;
	b->expires_ms = 500;
	assert_int_equal(registry_next_expiry(&r), 500);
	assert_int_equal(registry_expire(&r, 499), 0);
	assert_int_equal(registry_expire(&r, 500), 1);
	assert_int_equal(b->declared, DECL_NONE);
	assert_int_equal(registry_next_expiry(&r), 1000);
	assert_int_equal(registry_expire(&r, 5000), 1);
	assert_int_equal(registry_next_expiry(&r), 0);
	registry_release(&r);
}

static void test_release_only_unused(void **state)
{
	struct registry r;
	struct service *s;

	(void)state;
	registry_init(&r, 10);
	s = registry_get(&r, "web");
	s->dependents = 1;
	registry_release_service(&r, s);
	assert_ptr_equal(registry_find(&r, "web"), s);
	s->dependents = 0;
	s->configured = true;
	registry_release_service(&r, s);
	assert_ptr_equal(registry_find(&r, "web"), s);
	s->configured = false;
	registry_release_service(&r, s);
	assert_null(registry_find(&r, "web"));
	assert_int_equal(r.n, 0);
	registry_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_find_sorted),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_derived_and_declared),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_release_only_unused),
	};

	return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
