/*
 * Unit tests for dns_answer: queries built with libldns against sets
 * published on a board by hand, answers read back with libldns. What is
 * answered (A, AAAA, SRV with addresses, the tag forms, HEX.addr, the SOA),
 * the negative answers (NXDOMAIN, NODATA, both with the SOA), what is
 * refused or not implemented, malformed and truncated packets, TC over UDP
 * and the complete answer over TCP, rotation, the per-source rate buckets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "../../discoveryd/dns_int.h"

static struct dns_zone zone;
static struct epboard *board;

/* Each set its own index, as the hub numbers them (the cache knows a set
 * by it). */
static void publish(const char *service, const struct ep *src, size_t n)
{
	static uint64_t index;
	struct epset *s = epset_new(service, ++index, src, n);

	assert_non_null(s);
	epboard_publish(board, s);
}

static int setup(void **state)
{
	static const char *const blue[] = { "blue" };
	struct ep api[] = {
		{ .instance = "a1",
		  .address = "10.0.0.1:80",
		  .node = "n",
		  .state = PROTO_STATE_READY,
		  .weight = 5,
		  .tags = blue,
		  .n_tags = 1 },
		{ .instance = "a2",
		  .address = "10.0.0.2:81",
		  .node = "n",
		  .state = PROTO_STATE_READY,
		  .weight = 100 },
		{ .instance = "a3",
		  .address = "[2001:db8::3]:82",
		  .node = "n",
		  .state = PROTO_STATE_READY,
		  .weight = 7 },
		{ .instance = "a4",
		  .address = "10.0.0.4:83",
		  .node = "n",
		  .state = PROTO_STATE_DRAINING,
		  .weight = 1 },
		{ .instance = "a5",
		  .address = "web.example:84",
		  .node = "n",
		  .state = PROTO_STATE_READY,
		  .weight = 9 },
	};
	struct ep idle[] = {
		{ .instance = "i1",
		  .address = "10.0.1.1:80",
		  .node = "n",
		  .state = PROTO_STATE_NOTREADY,
		  .weight = 1 },
	};
	struct ep *many = calloc(300, sizeof(*many));
	char(*addr)[32] = calloc(300, 32), (*name)[16] = calloc(300, 16);

	(void)state;
	assert_int_equal(dns_zone_init(&zone, "Discovery", 5, 2, 1232), 0);
	board = epboard_new();
	publish("api", api, 5);
	publish("idle", idle, 1);
	publish("a.b", api, 1);
	for (int i = 0; i < 300; i++) {
		snprintf(addr[i], 32, "10.1.%d.%d:%d", i / 250, i % 250 + 1,
			 1000 + i);
		snprintf(name[i], 16, "m%03d", i);
		many[i] = (struct ep){ .instance = name[i],
				       .address = addr[i],
				       .node = "n",
				       .state = PROTO_STATE_READY,
				       .weight = 1 };
	}
	publish("many", many, 300);
	free(many);
	free(addr);
	free(name);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	epboard_free(board);
	dns_zone_release(&zone);
	return 0;
}

/* Ask name/type (class IN unless cls), over UDP or TCP, EDNS size edns. */
static ldns_pkt *ask_full(const char *name, ldns_rr_type type,
			  ldns_rr_class cls, bool tcp, uint16_t edns,
			  struct dns_outcome *o)
{
	ldns_pkt *q = NULL, *r = NULL;
	uint8_t *wire, *out;
	size_t len, outlen;

	assert_int_equal(ldns_pkt_query_new_frm_str(&q, name, type, cls,
						    LDNS_RD),
			 LDNS_STATUS_OK);
	ldns_pkt_set_id(q, 4242);
	if (edns)
		ldns_pkt_set_edns_udp_size(q, edns);
	assert_int_equal(ldns_pkt2wire(&wire, q, &len), LDNS_STATUS_OK);
	ldns_pkt_free(q);
	assert_int_equal(dns_answer(&zone, board, NULL, wire, len, tcp, 0, &out,
				    &outlen, o),
			 0);
	free(wire);
	assert_false(o->drop);
	assert_true(outlen <= (tcp ? 65535 : edns > 512 ? edns : 512));
	assert_int_equal(ldns_wire2pkt(&r, out, outlen), LDNS_STATUS_OK);
	free(out);
	assert_int_equal(ldns_pkt_id(r), 4242);
	assert_true(ldns_pkt_qr(r));
	return r;
}

static ldns_pkt *ask(const char *name, ldns_rr_type type)
{
	struct dns_outcome o;

	return ask_full(name, type, LDNS_RR_CLASS_IN, false, 0, &o);
}

static size_t count(ldns_pkt *r, ldns_pkt_section s)
{
	ldns_rr_list *l = s == LDNS_SECTION_ANSWER    ? ldns_pkt_answer(r) :
			  s == LDNS_SECTION_AUTHORITY ? ldns_pkt_authority(r) :
							ldns_pkt_additional(r);

	return ldns_rr_list_rr_count(l);
}

static char *rdata(ldns_pkt *r, size_t i)
{
	ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(r), i);
	static char text[4][200];
	char *s = ldns_rdf2str(ldns_rr_rdf(rr, ldns_rr_rd_count(rr) - 1));

	snprintf(text[i % 4], sizeof(text[0]), "%s", s);
	free(s);
	return text[i % 4];
}

static void test_a_and_aaaa(void **state)
{
	ldns_pkt *r = ask("api.service.discovery.", LDNS_RR_TYPE_A);
	bool seen1 = false, seen2 = false;

	(void)state;
	assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
	assert_true(ldns_pkt_aa(r));
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 2); /* a4 drains */
	for (size_t i = 0; i < 2; i++) {
		ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(r), i);

		assert_int_equal(ldns_rr_ttl(rr), 5);
		seen1 |= strcmp(rdata(r, i), "10.0.0.1") == 0;
		seen2 |= strcmp(rdata(r, i), "10.0.0.2") == 0;
	}
	assert_true(seen1 && seen2);
	ldns_pkt_free(r);
	r = ask("API.Service.DISCOVERY.", LDNS_RR_TYPE_AAAA);
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 1);
	assert_string_equal(rdata(r, 0), "2001:db8::3");
	ldns_pkt_free(r);
	r = ask("blue.api.service.discovery.", LDNS_RR_TYPE_A);
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 1);
	assert_string_equal(rdata(r, 0), "10.0.0.1");
	ldns_pkt_free(r);
	/* A service whose name has a dot is itself before a tag. */
	r = ask("a.b.service.discovery.", LDNS_RR_TYPE_A);
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 1);
	ldns_pkt_free(r);
}

static void test_srv_with_addresses(void **state)
{
	ldns_pkt *r = ask("_api._tcp.service.discovery.", LDNS_RR_TYPE_SRV);
	size_t n;

	(void)state;
	assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
	n = count(r, LDNS_SECTION_ANSWER);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++) {
		ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(r), i);
		char *text = ldns_rr2str(rr);

		assert_int_equal(ldns_rr_get_type(rr), LDNS_RR_TYPE_SRV);
		assert_true(strstr(text, "1 5 80 0a000001.addr.discovery.") ||
			    strstr(text, "1 100 81 0a000002.addr.discovery.") ||
			    strstr(text, "1 7 82 20010db8000000000000000000000"
					 "003.addr.discovery.") ||
			    strstr(text, "1 9 84 web.example."));
		free(text);
	}
	assert_int_equal(count(r, LDNS_SECTION_ADDITIONAL), 3);
	ldns_pkt_free(r);
	r = ask("_api._blue.service.discovery.", LDNS_RR_TYPE_SRV);
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 1);
	ldns_pkt_free(r);
	r = ask("0a000002.addr.discovery.", LDNS_RR_TYPE_A);
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 1);
	assert_string_equal(rdata(r, 0), "10.0.0.2");
	ldns_pkt_free(r);
}

static void assert_negative(ldns_pkt *r, int rcode)
{
	ldns_rr *soa;

	assert_int_equal(ldns_pkt_get_rcode(r), rcode);
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 0);
	assert_int_equal(count(r, LDNS_SECTION_AUTHORITY), 1);
	soa = ldns_rr_list_rr(ldns_pkt_authority(r), 0);
	assert_int_equal(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
	assert_int_equal(ldns_rr_ttl(soa), 2);
	ldns_pkt_free(r);
}

static void test_negative_answers(void **state)
{
	(void)state;
	assert_negative(ask("nope.service.discovery.", LDNS_RR_TYPE_A),
			LDNS_RCODE_NXDOMAIN);
	assert_negative(ask("_nope._tcp.service.discovery.", LDNS_RR_TYPE_SRV),
			LDNS_RCODE_NXDOMAIN);
	assert_negative(ask("red.api.service.discovery.", LDNS_RR_TYPE_A),
			LDNS_RCODE_NOERROR); /* a tag nobody has */
	assert_negative(ask("x.discovery.", LDNS_RR_TYPE_A),
			LDNS_RCODE_NXDOMAIN);
	assert_negative(ask("zz.addr.discovery.", LDNS_RR_TYPE_A),
			LDNS_RCODE_NXDOMAIN);
	/* Known, nothing ready: NODATA. */
	assert_negative(ask("idle.service.discovery.", LDNS_RR_TYPE_A),
			LDNS_RCODE_NOERROR);
	/* A type we hold none of, for a name that exists. */
	assert_negative(ask("api.service.discovery.", LDNS_RR_TYPE_MX),
			LDNS_RCODE_NOERROR);
	assert_negative(ask("api.service.discovery.", LDNS_RR_TYPE_TXT),
			LDNS_RCODE_NOERROR);
	assert_negative(ask("service.discovery.", LDNS_RR_TYPE_A),
			LDNS_RCODE_NOERROR);
}

static void test_refused_and_notimp(void **state)
{
	struct dns_outcome o;
	ldns_pkt *r;

	(void)state;
	r = ask("example.com.", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_REFUSED);
	ldns_pkt_free(r);
	r = ask("xdiscovery.", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_REFUSED);
	ldns_pkt_free(r);
	r = ask("api.service.discovery.", LDNS_RR_TYPE_ANY);
	assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOTIMPL);
	ldns_pkt_free(r);
	r = ask_full("api.service.discovery.", LDNS_RR_TYPE_A, LDNS_RR_CLASS_CH,
		     false, 0, &o);
	assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_REFUSED);
	ldns_pkt_free(r);
	r = ask("discovery.", LDNS_RR_TYPE_SOA);
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 1);
	ldns_pkt_free(r);
}

static void test_malformed(void **state)
{
	static const uint8_t response[12] = { 0, 1, 0x80 };
	uint8_t bad[40] = {
		0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 60
	}; /* a 60-byte label that is not there */
	struct dns_outcome o;
	ldns_pkt *r = NULL;
	uint8_t *out;
	size_t len;

	(void)state;
	assert_int_equal(dns_answer(&zone, board, NULL, bad, 5, false, 0, &out,
				    &len, &o),
			 0);
	assert_true(o.drop);
	assert_null(out);
	assert_int_equal(dns_answer(&zone, board, NULL, response, 12, false, 0,
				    &out, &len, &o),
			 0);
	assert_true(o.drop);
	assert_int_equal(dns_answer(&zone, board, NULL, bad, sizeof(bad), false,
				    0, &out, &len, &o),
			 0);
	assert_false(o.drop);
	assert_int_equal(o.rcode, LDNS_RCODE_FORMERR);
	assert_int_equal(ldns_wire2pkt(&r, out, len), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_id(r), 0x1234);
	assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_FORMERR);
	ldns_pkt_free(r);
	free(out);
	/* No question at all. */
	bad[5] = 0;
	assert_int_equal(dns_answer(&zone, board, NULL, bad, 12, false, 0, &out,
				    &len, &o),
			 0);
	assert_int_equal(o.rcode, LDNS_RCODE_FORMERR);
	free(out);
}

static void test_truncated_then_complete(void **state)
{
	struct dns_outcome o;
	ldns_pkt *r;

	(void)state;
	r = ask_full("many.service.discovery.", LDNS_RR_TYPE_A,
		     LDNS_RR_CLASS_IN, false, 0, &o);
	assert_true(o.truncated && ldns_pkt_tc(r));
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 0);
	ldns_pkt_free(r);
	r = ask_full("many.service.discovery.", LDNS_RR_TYPE_A,
		     LDNS_RR_CLASS_IN, true, 0, &o);
	assert_false(ldns_pkt_tc(r));
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 300);
	ldns_pkt_free(r);
	r = ask_full("_many._tcp.service.discovery.", LDNS_RR_TYPE_SRV,
		     LDNS_RR_CLASS_IN, true, 0, &o);
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 300);
	assert_int_equal(count(r, LDNS_SECTION_ADDITIONAL), 300);
	ldns_pkt_free(r);
	/* EDNS0: a bigger UDP answer, still capped at max_udp_size. */
	r = ask_full("api.service.discovery.", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN,
		     false, 4096, &o);
	assert_false(ldns_pkt_tc(r));
	assert_int_equal(ldns_pkt_edns_udp_size(r), 1232);
	ldns_pkt_free(r);
	r = ask_full("many.service.discovery.", LDNS_RR_TYPE_A,
		     LDNS_RR_CLASS_IN, false, 65000, &o);
	assert_true(ldns_pkt_tc(r));
	ldns_pkt_free(r);
}

static void test_rotation(void **state)
{
	ldns_pkt *q = NULL, *r;
	char first[3][64];
	uint8_t *wire, *out;
	size_t len, outlen;
	struct dns_outcome o;

	(void)state;
	ldns_pkt_query_new_frm_str(&q, "api.service.discovery.",
				   LDNS_RR_TYPE_SRV, LDNS_RR_CLASS_IN, 0);
	ldns_pkt2wire(&wire, q, &len);
	ldns_pkt_free(q);
	for (uint64_t k = 0; k < 3; k++) {
		assert_int_equal(dns_answer(&zone, board, NULL, wire, len,
					    false, k, &out, &outlen, &o),
				 0);
		r = NULL;
		assert_int_equal(ldns_wire2pkt(&r, out, outlen),
				 LDNS_STATUS_OK);
		snprintf(first[k], sizeof(first[k]), "%s", rdata(r, 0));
		ldns_pkt_free(r);
		free(out);
	}
	free(wire);
	assert_string_not_equal(first[0], first[1]);
	assert_string_not_equal(first[1], first[2]);
}

/* One query's wire, with id and RD as given. */
static uint8_t *wire_of(const char *name, ldns_rr_type type, uint16_t id,
			bool rd, size_t *len)
{
	ldns_pkt *q = NULL;
	uint8_t *wire;

	ldns_pkt_query_new_frm_str(&q, name, type, LDNS_RR_CLASS_IN,
				   rd ? LDNS_RD : 0);
	ldns_pkt_set_id(q, id);
	assert_int_equal(ldns_pkt2wire(&wire, q, len), LDNS_STATUS_OK);
	ldns_pkt_free(q);
	return wire;
}

static ldns_pkt *cached(struct dns_cache *c, const char *name, uint16_t id,
			bool rd)
{
	size_t len, outlen;
	uint8_t *wire = wire_of(name, LDNS_RR_TYPE_A, id, rd, &len), *out;
	struct dns_outcome o;
	ldns_pkt *r = NULL;

	assert_int_equal(dns_answer(&zone, board, c, wire, len, false, 0, &out,
				    &outlen, &o),
			 0);
	assert_int_equal(ldns_wire2pkt(&r, out, outlen), LDNS_STATUS_OK);
	free(wire);
	free(out);
	assert_int_equal(ldns_pkt_id(r), id);
	assert_int_equal(ldns_pkt_rd(r), rd);
	return r;
}

static void test_cache(void **state)
{
	struct dns_cache *c = dns_cache_new();
	struct ep one = { .instance = "c1",
			  .address = "10.7.0.1:80",
			  .node = "n",
			  .state = PROTO_STATE_READY,
			  .weight = 1 };
	ldns_pkt *r;

	(void)state;
	publish("cached", &one, 1);
	r = cached(c, "cached.service.discovery.", 1, true);
	assert_string_equal(rdata(r, 0), "10.7.0.1");
	ldns_pkt_free(r);
	/* The same answer again, with the second query's ID and RD. */
	r = cached(c, "cached.service.discovery.", 2, false);
	assert_string_equal(rdata(r, 0), "10.7.0.1");
	ldns_pkt_free(r);
	/* The name's case is echoed: another spelling, another entry. */
	r = cached(c, "CACHED.service.discovery.", 3, true);
	assert_int_equal(count(r, LDNS_SECTION_ANSWER), 1);
	ldns_pkt_free(r);
	/* A new set: the kept answer is not used. */
	one.address = "10.7.0.2:80";
	publish("cached", &one, 1);
	r = cached(c, "cached.service.discovery.", 4, true);
	assert_string_equal(rdata(r, 0), "10.7.0.2");
	ldns_pkt_free(r);
	dns_cache_free(c);
}

static void test_rate_buckets(void **state)
{
	static struct dns_rate rate;
	struct sockaddr_in a = { .sin_family = AF_INET }, b = a;
	int taken = 0;

	(void)state;
	a.sin_addr.s_addr = htonl(0x7f000001);
	b.sin_addr.s_addr = htonl(0x7f000002);
	dns_rate_init(&rate, 10, 20);
	for (int i = 0; i < 100; i++)
		taken += dns_rate_take(&rate, (struct sockaddr *)&a, 1000000);
	assert_int_equal(taken, 20); /* the burst */
	assert_true(dns_rate_take(&rate, (struct sockaddr *)&b, 1000000));
	/* 10 a second: a tenth of a second brings one back. */
	assert_true(dns_rate_take(&rate, (struct sockaddr *)&a, 1100000));
	assert_false(dns_rate_take(&rate, (struct sockaddr *)&a, 1100000));
	dns_rate_init(&rate, 0, 1); /* no limit */
	for (int i = 0; i < 100; i++)
		assert_true(dns_rate_take(&rate, (struct sockaddr *)&a, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_and_aaaa),
		cmocka_unit_test(test_srv_with_addresses),
		cmocka_unit_test(test_negative_answers),
		cmocka_unit_test(test_refused_and_notimp),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_truncated_then_complete),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_rate_buckets),
	};

	return cmocka_run_group_tests_name("dns", tests, setup, teardown);
}
