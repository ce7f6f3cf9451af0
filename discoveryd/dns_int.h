/*
 * dns_int: what the DNS server's files share: the zone it answers for
 * (dns_answer.c turns one query into one answer), the counters, the
 * per-source rate limit (dns_rate.c) and the TCP side (dns_tcp.c). Nothing
 * outside dns*.c includes it.
 */
#ifndef DISCOVERYD_DNS_INT_H
#define DISCOVERYD_DNS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ldns/ldns.h>

#include "epboard.h"

/* UDP answers: 512 bytes, or the query's EDNS0 size up to dns.max_udp. */
#define DNS_UDP_MIN 512
/* A TCP message's length prefix is 16 bits. */
#define DNS_TCP_MAX 65535
/* One query is a few hundred bytes; a bigger datagram is read cut short. */
#define DNS_QUERY_MAX 4096
/* Answers kept per thread (dns_cache.c), and the largest kept. */
#define DNS_CACHE_SLOTS      1024
#define DNS_CACHE_ANSWER_MAX 8192
/* Per-source buckets (addresses hashed into this many). */
#define DNS_RATE_SLOTS 4096

/* The zone: everything below dns.domain. */
struct dns_zone {
	char domain[256];      /* lower case, no trailing dot */
	ldns_rdf *origin;      /* the same as a name */
	ldns_rdf *soa_mname;   /* ns.DOMAIN. */
	ldns_rdf *soa_rname;   /* hostmaster.DOMAIN. */
	uint32_t serial;       /* the start time: a restart moves it */
	uint32_t ttl;          /* answers, seconds */
	uint32_t negative_ttl; /* SOA minimum and TTL */
	uint16_t max_udp;      /* EDNS0 sizes are capped here */
};

int dns_zone_init(struct dns_zone *z, const char *domain, uint32_t ttl,
		  uint32_t negative_ttl, uint16_t max_udp);
void dns_zone_release(struct dns_zone *z);

/* Counted answers, by rcode (the rest are "other"). */
enum dns_rcode_kind {
	DNS_RC_NOERROR = 0,
	DNS_RC_FORMERR,
	DNS_RC_SERVFAIL,
	DNS_RC_NXDOMAIN,
	DNS_RC_NOTIMP,
	DNS_RC_REFUSED,
	DNS_RC_KINDS
};

struct dns_stats {
	atomic_uint_least64_t answers[2][DNS_RC_KINDS]; /* [tcp][rcode] */
	atomic_uint_least64_t truncated;    /* TC set on a UDP answer */
	atomic_uint_least64_t rate_limited; /* over dns.rate_per_source */
	atomic_uint_least64_t dropped;      /* too short, or a response */
	atomic_uint_least64_t tcp_refused;  /* over dns.max_tcp */
	atomic_uint_least64_t tcp_timeouts; /* idle or slow past the timeout */
	atomic_uint_least64_t tcp_errors;   /* bad length prefix, reset */
	atomic_uint tcp_open;
};

/* What dns_answer did. */
struct dns_outcome {
	bool drop;      /* no answer at all (and *out is NULL) */
	bool truncated; /* TC set */
	int rcode;
};

/* One thread's answers already written (dns_cache.c). */
struct dns_cache;
struct dns_cache_key {
	uint64_t index; /* the index of the set answered from */
	uint32_t rotation;
	uint16_t qtype;
	uint16_t limit; /* the size the answer had to fit */
	bool tcp, edns;
	const uint8_t *qname; /* the question's name, uncompressed */
	size_t qname_len;
};

struct dns_cache *dns_cache_new(void);
void dns_cache_free(struct dns_cache *c);
/* 0 with a copy of the answer (the query's ID, RD and CD set) in *out,
 * or -1: not there. */
int dns_cache_get(struct dns_cache *c, const struct dns_cache_key *k,
		  const uint8_t *query, uint8_t **out, size_t *outlen,
		  struct dns_outcome *o);
/* Keep a copy of wire for k (it holds k->set). Best effort. */
void dns_cache_put(struct dns_cache *c, const struct dns_cache_key *k,
		   const uint8_t *wire, size_t len,
		   const struct dns_outcome *o);

/*
 * Answer the query in q (len bytes) from board: *out (malloc'd, the
 * caller frees) and *outlen, with what happened in *o. Over UDP the answer
 * fits 512 bytes or the query's EDNS0 size (capped at z->max_udp), TC set
 * when it would not; over TCP it fits 65,535. rotate picks where the
 * records start. With cache (the calling thread's; NULL: none), answers
 * about a service's set are kept and reused. Returns 0, or -1 when
 * memory ran out (no answer).
 */
int dns_answer(const struct dns_zone *z, struct epboard *board,
	       struct dns_cache *cache, const uint8_t *q, size_t len, bool tcp,
	       uint64_t rotate, uint8_t **out, size_t *outlen,
	       struct dns_outcome *o);

/* Count an answer. */
void dns_count(struct dns_stats *s, bool tcp, const struct dns_outcome *o);

/* Per-source token buckets, refilled at rate a second up to burst. */
struct dns_rate {
	double rate, burst; /* rate 0: no limit */
	struct dns_bucket {
		double tokens;
		int64_t at_us;
		unsigned char key[8]; /* IPv4, or an IPv6 /64 */
	} slots[DNS_RATE_SLOTS];
};

void dns_rate_init(struct dns_rate *r, double rate, double burst);
/* True when a query from addr may be answered now (takes a token). */
bool dns_rate_take(struct dns_rate *r, const struct sockaddr *addr,
		   int64_t now_us);

struct dns_tcp;
/* The TCP side's thread on the listening socket fd (taken over, closed
 * on failure too), with
 * its own rate buckets: the UDP thread's are its alone, so neither locks. */
struct dns_tcp *dns_tcp_start(int fd, const struct dns_zone *z,
			      struct epboard *board, struct dns_stats *stats,
			      double rate, double burst, unsigned max_conns,
			      int64_t timeout_ms);
void dns_tcp_stop(struct dns_tcp *t);

#endif
