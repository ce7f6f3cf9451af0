/*
 * dns_answer: one query in, one answer out, on libldns (docs/dns.md says
 * what is answered). Pure but for the board it reads: the UDP and TCP
 * threads and the unit test call it alike.
 *
 * Names below DOMAIN (lower-cased first; DNS names are case-insensitive):
 *
 *   SERVICE.service            A, AAAA, SRV   ready endpoints
 *   TAG.SERVICE.service        A, AAAA, SRV   those with the tag
 *   _SERVICE._tcp.service      SRV
 *   _SERVICE._TAG.service      SRV            those with the tag (Consul's)
 *   HEX.addr                   A, AAAA        an SRV target: the IP in hex
 *   DOMAIN                     SOA
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns_int.h"
#include "proto.h"

/* The smallest record of a kind on the wire (a compressed owner): more
 * records than fit at that size cannot fit at all. */
#define RR_FIXED  (2 + 10)
#define A_MIN     (RR_FIXED + 4)
#define AAAA_MIN  (RR_FIXED + 16)
#define SRV_MIN   (RR_FIXED + 6 + 2)
#define HEADER_QD (LDNS_HEADER_SIZE + 4 + 2) /* a question, least */

int dns_zone_init(struct dns_zone *z, const char *domain, uint32_t ttl,
		  uint32_t negative_ttl, uint16_t max_udp)
{
	char name[300];

	memset(z, 0, sizeof(*z));
	snprintf(z->domain, sizeof(z->domain), "%s", domain);
	for (char *c = z->domain; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	z->ttl = ttl;
	z->negative_ttl = negative_ttl;
	z->max_udp = max_udp < DNS_UDP_MIN ? DNS_UDP_MIN : max_udp;
	z->serial = (uint32_t)time(NULL);
	snprintf(name, sizeof(name), "%s.", z->domain);
	z->origin = ldns_dname_new_frm_str(name);
	snprintf(name, sizeof(name), "ns.%s.", z->domain);
	z->soa_mname = ldns_dname_new_frm_str(name);
	snprintf(name, sizeof(name), "hostmaster.%s.", z->domain);
	z->soa_rname = ldns_dname_new_frm_str(name);
	if (!z->origin || !z->soa_mname || !z->soa_rname) {
		dns_zone_release(z);
		return -1;
	}
	return 0;
}

void dns_zone_release(struct dns_zone *z)
{
	ldns_rdf_deep_free(z->origin);
	ldns_rdf_deep_free(z->soa_mname);
	ldns_rdf_deep_free(z->soa_rname);
	z->origin = z->soa_mname = z->soa_rname = NULL;
}

/* What a question asks for, once its name is read. */
enum kind {
	K_NXDOMAIN, /* below DOMAIN, no such name */
	K_EMPTY,    /* a name that exists with no records (service., addr.) */
	K_APEX,
	K_SERVICE, /* A, AAAA or SRV of a service (maybe a tag) */
	K_SRV,     /* the _SERVICE._tcp form: SRV only */
	K_ADDR,    /* HEX.addr */
};

struct query {
	const struct dns_zone *z;
	ldns_pkt *q;
	const ldns_rr *question;
	ldns_rr_type type;
	enum kind kind;
	struct epset *set; /* K_SERVICE, K_SRV */
	char tag[PROTO_NAME_MAX + 1];
	int family; /* K_ADDR */
	unsigned char ip[16];
	/* The endpoints that answer, in rotated order. */
	const struct ep **ep;
	size_t n;
};

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' :
	       c >= 'a' && c <= 'f' ? c - 'a' + 10 :
				      -1;
}

/* "7f000001" or 32 hex digits: the address; else K_NXDOMAIN. */
static enum kind read_addr(struct query *x, const char *hex)
{
	size_t n = strlen(hex);

	if (n != 8 && n != 32)
		return K_NXDOMAIN;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);

		if (hi < 0 || lo < 0)
			return K_NXDOMAIN;
		x->ip[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	x->family = n == 8 ? AF_INET : AF_INET6;
	return K_ADDR;
}

static struct epset *lookup(struct epboard *b, const char *service)
{
	return proto_valid_name(service) ? epboard_get(b, service) : NULL;
}

/* SERVICE, or TAG.SERVICE: the whole name is tried as a service first,
 * since a service's name may hold dots. */
static enum kind read_service(struct query *x, struct epboard *b, char *p)
{
	char *dot;

	if ((x->set = lookup(b, p)))
		return K_SERVICE;
	dot = strchr(p, '.');
	if (!dot || dot - p > PROTO_NAME_MAX)
		return K_NXDOMAIN;
	*dot = '\0';
	if (!proto_valid_name(p) || !(x->set = lookup(b, dot + 1)))
		return K_NXDOMAIN;
	snprintf(x->tag, sizeof(x->tag), "%s", p);
	return K_SERVICE;
}

/* _SERVICE._tcp or _SERVICE._TAG. */
static enum kind read_srv(struct query *x, struct epboard *b, char *p)
{
	char *last = strrchr(p, '.');

	if (!last || last[1] != '_' || p[0] != '_')
		return K_NXDOMAIN;
	*last = '\0';
	if (strcmp(last + 2, "tcp") != 0) {
		if (!proto_valid_name(last + 2))
			return K_NXDOMAIN;
		snprintf(x->tag, sizeof(x->tag), "%s", last + 2);
	}
	return (x->set = lookup(b, p + 1)) ? K_SRV : K_NXDOMAIN;
}

/* The name, lower-cased, without DOMAIN: what it is. -1: not below DOMAIN. */
static int read_name(struct query *x, struct epboard *b)
{
	char *name = ldns_rdf2str(ldns_rr_owner(x->question));
	size_t n, d = strlen(x->z->domain);
	int kind = -1;

	if (!name)
		return -1;
	for (char *c = name; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	n = strlen(name);
	if (n && name[n - 1] == '.')
		name[--n] = '\0';
	if (n == d && strcmp(name, x->z->domain) == 0) {
		kind = K_APEX;
	} else if (n > d && name[n - d - 1] == '.' &&
		   strcmp(name + n - d, x->z->domain) == 0) {
		char *p = name, *end = name + n - d - 1;

		*end = '\0';
		if (strcmp(p, "service") == 0 || strcmp(p, "addr") == 0)
			kind = K_EMPTY;
		else if (end - p > 8 && strcmp(end - 8, ".service") == 0) {
			end[-8] = '\0';
			kind = p[0] == '_' ? read_srv(x, b, p) :
					     read_service(x, b, p);
		} else if (end - p > 5 && strcmp(end - 5, ".addr") == 0) {
			end[-5] = '\0';
			kind = read_addr(x, p);
		} else
			kind = K_NXDOMAIN;
	}
	free(name);
	return kind;
}

static bool has_tag(const struct ep *e, const char *tag)
{
	if (!tag[0])
		return true;
	for (size_t i = 0; i < e->n_tags; i++)
		if (strcmp(e->tags[i], tag) == 0)
			return true;
	return false;
}

static void reverse(const struct ep **v, size_t from, size_t to)
{
	while (from + 1 < to) {
		const struct ep *t = v[from];

		v[from++] = v[--to];
		v[to] = t;
	}
}

/* The ready endpoints this question wants, rotated; family 0: any. */
static int gather(struct query *x, int family, uint64_t rotate)
{
	const struct epset *s = x->set;
	size_t m = 0, start;

	x->ep = malloc((s->n ? s->n : 1) * sizeof(*x->ep));
	if (!x->ep)
		return -1;
	for (size_t i = 0; i < s->n; i++) {
		const struct ep *e = &s->ep[i];

		if (e->state == PROTO_STATE_READY && e->port &&
		    (family ? e->family == family : e->host[0] != '\0') &&
		    has_tag(e, x->tag))
			x->ep[m++] = e;
	}
	/* Rotate left by start: reverse both parts, then the whole. */
	start = m ? rotate % m : 0;
	reverse(x->ep, 0, start);
	reverse(x->ep, start, m);
	reverse(x->ep, 0, m);
	x->n = m;
	return 0;
}

/* ---- records --------------------------------------------------------- */

static ldns_rr *rr_new(ldns_rdf *owner, ldns_rr_type type, uint32_t ttl)
{
	ldns_rr *rr = ldns_rr_new();

	if (!rr || !owner) {
		ldns_rr_free(rr);
		ldns_rdf_deep_free(owner);
		return NULL;
	}
	ldns_rr_set_owner(rr, owner);
	ldns_rr_set_type(rr, type);
	ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
	ldns_rr_set_ttl(rr, ttl);
	return rr;
}

/* Push rdf onto rr; on failure rr is freed. */
static ldns_rr *rr_add(ldns_rr *rr, ldns_rdf *rdf)
{
	if (!rr || !rdf || !ldns_rr_push_rdf(rr, rdf)) {
		ldns_rdf_deep_free(rdf);
		ldns_rr_free(rr);
		return NULL;
	}
	return rr;
}

static ldns_rr *address_rr(ldns_rdf *owner, int family, const unsigned char *ip,
			   uint32_t ttl)
{
	bool v4 = family == AF_INET;
	ldns_rr *rr =
		rr_new(owner, v4 ? LDNS_RR_TYPE_A : LDNS_RR_TYPE_AAAA, ttl);

	return rr_add(rr, ldns_rdf_new_frm_data(v4 ? LDNS_RDF_TYPE_A :
						     LDNS_RDF_TYPE_AAAA,
						v4 ? 4 : 16, ip));
}

/* An SRV target for an IP literal: HEX.addr.DOMAIN, which we answer. */
static ldns_rdf *addr_name(const struct dns_zone *z, int family,
			   const unsigned char *ip)
{
	char name[300];
	size_t n = family == AF_INET ? 4 : 16, at = 0;

	for (size_t i = 0; i < n; i++)
		at += (size_t)snprintf(name + at, sizeof(name) - at, "%02x",
				       ip[i]);
	snprintf(name + at, sizeof(name) - at, ".addr.%s.", z->domain);
	return ldns_dname_new_frm_str(name);
}

static ldns_rr *srv_rr(const struct query *x, const struct ep *e)
{
	char host[300];
	ldns_rdf *target;
	ldns_rr *rr;

	if (e->family) {
		target = addr_name(x->z, e->family, e->ip);
	} else {
		snprintf(host, sizeof(host), "%s.", e->host);
		target = ldns_dname_new_frm_str(host);
	}
	rr = rr_new(ldns_rdf_clone(ldns_rr_owner(x->question)),
		    LDNS_RR_TYPE_SRV, x->z->ttl);
	rr = rr_add(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, 1));
	rr = rr_add(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16,
					      (uint16_t)e->weight));
	rr = rr_add(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16,
					      (uint16_t)e->port));
	return rr_add(rr, target);
}

static ldns_rr *soa_rr(const struct dns_zone *z)
{
	static const uint32_t timers[] = { 3600, 600, 86400 };
	ldns_rr *rr = rr_new(ldns_rdf_clone(z->origin), LDNS_RR_TYPE_SOA,
			     z->negative_ttl);

	rr = rr_add(rr, ldns_rdf_clone(z->soa_mname));
	rr = rr_add(rr, ldns_rdf_clone(z->soa_rname));
	rr = rr_add(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_INT32, z->serial));
	for (size_t i = 0; i < 3; i++)
		rr = rr_add(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD,
						      timers[i]));
	return rr_add(rr, ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD,
						z->negative_ttl));
}

static bool push(ldns_pkt *p, ldns_pkt_section s, ldns_rr *rr)
{
	if (!rr)
		return false;
	if (!ldns_pkt_push_rr(p, s, rr)) {
		ldns_rr_free(rr);
		return false;
	}
	return true;
}

/* ---- the answer ------------------------------------------------------- */

/* An answer's header and question, as the query had them. */
static ldns_pkt *reply_new(const struct query *x, uint16_t id, int opcode,
			   int rcode, uint16_t edns_size)
{
	ldns_pkt *r = ldns_pkt_new();

	if (!r)
		return NULL;
	ldns_pkt_set_id(r, id);
	ldns_pkt_set_qr(r, true);
	ldns_pkt_set_opcode(r, (ldns_pkt_opcode)opcode);
	ldns_pkt_set_rcode(r, (uint8_t)rcode);
	if (x && x->question) {
		ldns_pkt_set_rd(r, ldns_pkt_rd(x->q));
		ldns_pkt_set_cd(r, ldns_pkt_cd(x->q));
		if (!push(r, LDNS_SECTION_QUESTION,
			  ldns_rr_clone(x->question))) {
			ldns_pkt_free(r);
			return NULL;
		}
	}
	if (edns_size)
		ldns_pkt_set_edns_udp_size(r, edns_size);
	return r;
}

static bool add_endpoint(const struct query *x, ldns_pkt *r, size_t i,
			 bool additional)
{
	const struct ep *e = x->ep[i];

	if (x->type == LDNS_RR_TYPE_SRV) {
		if (!push(r, LDNS_SECTION_ANSWER, srv_rr(x, e)))
			return false;
		/* The target's address, once per address. */
		if (!additional || !e->family)
			return true;
		for (size_t j = 0; j < i; j++)
			if (x->ep[j]->family == e->family &&
			    memcmp(x->ep[j]->ip, e->ip, 16) == 0)
				return true;
		return push(r, LDNS_SECTION_ADDITIONAL,
			    address_rr(addr_name(x->z, e->family, e->ip),
				       e->family, e->ip, x->z->ttl));
	}
	return push(r, LDNS_SECTION_ANSWER,
		    address_rr(ldns_rdf_clone(ldns_rr_owner(x->question)),
			       e->family, e->ip, x->z->ttl));
}

/* The records of x, the first n of them, then the SOA if there are none. */
static ldns_pkt *build(const struct query *x, uint16_t edns, size_t n,
		       bool additional)
{
	ldns_pkt *r = reply_new(x, ldns_pkt_id(x->q), LDNS_PACKET_QUERY,
				x->kind == K_NXDOMAIN ? LDNS_RCODE_NXDOMAIN :
							LDNS_RCODE_NOERROR,
				edns);
	bool ok = r != NULL;

	if (r)
		ldns_pkt_set_aa(r, true);
	if (ok && x->kind == K_ADDR && n)
		ok = push(r, LDNS_SECTION_ANSWER,
			  address_rr(ldns_rdf_clone(ldns_rr_owner(x->question)),
				     x->family, x->ip, x->z->ttl));
	else if (ok && x->kind == K_APEX && n)
		ok = push(r, LDNS_SECTION_ANSWER, soa_rr(x->z));
	else
		for (size_t i = 0; ok && i < n && x->ep; i++)
			ok = add_endpoint(x, r, i, additional);
	if (ok && !n)
		ok = push(r, LDNS_SECTION_AUTHORITY, soa_rr(x->z));
	if (!ok) {
		ldns_pkt_free(r);
		return NULL;
	}
	return r;
}

static int encode(ldns_pkt *r, uint8_t **out, size_t *outlen)
{
	int rc = r && ldns_pkt2wire(out, r, outlen) == LDNS_STATUS_OK ? 0 : -1;

	ldns_pkt_free(r);
	return rc;
}

/* How many records this question has (before any cut), and their least
 * size each. */
static size_t records(struct query *x, uint64_t rotate, size_t *least)
{
	int family = x->type == LDNS_RR_TYPE_A    ? AF_INET :
		     x->type == LDNS_RR_TYPE_AAAA ? AF_INET6 :
						    0;

	*least = family == AF_INET  ? A_MIN :
		 family == AF_INET6 ? AAAA_MIN :
				      SRV_MIN;
	switch (x->kind) {
	case K_ADDR: return x->family == family;
	case K_APEX: return x->type == LDNS_RR_TYPE_SOA;
	case K_SRV:
		if (x->type != LDNS_RR_TYPE_SRV)
			return 0;
		/* fall through */
	case K_SERVICE:
		if (!family && x->type != LDNS_RR_TYPE_SRV)
			return 0;
		return gather(x, family, rotate) == 0 ? x->n : (size_t)-1;
	default: return 0;
	}
}

/*
 * The records fit the limit: over TCP as many as fit (a rotating part of
 * a huge set); over UDP all with their addresses, all without, or none
 * with TC.
 */
static int answer_records(struct query *x, uint16_t edns, size_t limit,
			  bool tcp, uint64_t rotate, uint8_t **out,
			  size_t *outlen, struct dns_outcome *o)
{
	size_t least, n = records(x, rotate, &least);

	if (n == (size_t)-1)
		return -1;
	if (tcp) {
		if (n > (limit - HEADER_QD) / least)
			n = (limit - HEADER_QD) / least;
		for (;;) {
			if (encode(build(x, edns, n, true), out, outlen) != 0)
				return -1;
			if (*outlen <= limit || n <= 1)
				return 0;
			free(*out);
			*out = NULL;
			n /= 2;
		}
	}
	if (n * least + HEADER_QD <= limit) {
		if (encode(build(x, edns, n, true), out, outlen) != 0)
			return -1;
		if (*outlen <= limit)
			return 0;
		free(*out);
		*out = NULL;
		if (encode(build(x, edns, n, false), out, outlen) != 0)
			return -1;
		if (*outlen <= limit)
			return 0;
		free(*out);
		*out = NULL;
	}
	o->truncated = true;
	{
		ldns_pkt *r = reply_new(x, ldns_pkt_id(x->q), LDNS_PACKET_QUERY,
					LDNS_RCODE_NOERROR, edns);

		if (r) {
			ldns_pkt_set_aa(r, true);
			ldns_pkt_set_tc(r, true);
		}
		return encode(r, out, outlen);
	}
}

/* A meta type or one we hold nothing of by design (zone transfers). */
static bool not_implemented(ldns_rr_type t)
{
	return t == LDNS_RR_TYPE_ANY || t == LDNS_RR_TYPE_AXFR ||
	       t == LDNS_RR_TYPE_IXFR || t == LDNS_RR_TYPE_MAILA ||
	       t == LDNS_RR_TYPE_MAILB;
}

/* Everything but the records: the rcode, or -1 to go on to them. */
static int check(struct query *x, struct epboard *b)
{
	if (ldns_pkt_get_opcode(x->q) != LDNS_PACKET_QUERY)
		return LDNS_RCODE_NOTIMPL;
	if (ldns_pkt_qdcount(x->q) != 1 ||
	    ldns_rr_list_rr_count(ldns_pkt_question(x->q)) != 1)
		return LDNS_RCODE_FORMERR;
	x->question = ldns_rr_list_rr(ldns_pkt_question(x->q), 0);
	x->type = ldns_rr_get_type(x->question);
	if (ldns_rr_get_class(x->question) != LDNS_RR_CLASS_IN)
		return LDNS_RCODE_REFUSED;
	if (not_implemented(x->type))
		return LDNS_RCODE_NOTIMPL;
	x->kind = (enum kind)read_name(x, b);
	if ((int)x->kind < 0)
		return LDNS_RCODE_REFUSED;
	return -1;
}

/* A service's answer, from the cache when it holds one. */
static int answer_set(struct query *x, struct dns_cache *cache,
		      const uint8_t *q, uint16_t edns, size_t limit, bool tcp,
		      uint64_t rotate, uint8_t **out, size_t *outlen,
		      struct dns_outcome *o)
{
	const ldns_rdf *name = ldns_rr_owner(x->question);
	struct dns_cache_key k = {
		.index = x->set->index,
		/* The same start for every rotate it stands for. */
		.rotation = (uint32_t)(rotate % (x->set->n ? x->set->n : 1)),
		.qtype = (uint16_t)x->type,
		.limit = (uint16_t)limit,
		.tcp = tcp,
		.edns = edns != 0,
		.qname = ldns_rdf_data(name),
		.qname_len = ldns_rdf_size(name),
	};

	if (!cache)
		return answer_records(x, edns, limit, tcp, rotate, out, outlen,
				      o);
	if (dns_cache_get(cache, &k, q, out, outlen, o) == 0)
		return 0;
	if (answer_records(x, edns, limit, tcp, k.rotation, out, outlen, o) !=
	    0)
		return -1;
	dns_cache_put(cache, &k, *out, *outlen, o);
	return 0;
}

int dns_answer(const struct dns_zone *z, struct epboard *board,
	       struct dns_cache *cache, const uint8_t *q, size_t len, bool tcp,
	       uint64_t rotate, uint8_t **out, size_t *outlen,
	       struct dns_outcome *o)
{
	struct query x = { .z = z };
	size_t limit = tcp ? DNS_TCP_MAX : DNS_UDP_MIN;
	uint16_t edns = 0;
	int rcode, rc;

	memset(o, 0, sizeof(*o));
	*out = NULL;
	*outlen = 0;
	/* Too short to answer (no ID), or a response: never answered, so
	 * two servers cannot bounce packets between them. */
	if (len < LDNS_HEADER_SIZE || LDNS_QR_WIRE(q)) {
		o->drop = true;
		return 0;
	}
	if (ldns_wire2pkt(&x.q, q, len) != LDNS_STATUS_OK) {
		o->rcode = LDNS_RCODE_FORMERR;
		return encode(reply_new(NULL, LDNS_ID_WIRE(q),
					LDNS_OPCODE_WIRE(q), o->rcode, 0),
			      out, outlen);
	}
	if (ldns_pkt_edns(x.q)) {
		edns = z->max_udp;
		if (!tcp && ldns_pkt_edns_udp_size(x.q) > DNS_UDP_MIN)
			limit = ldns_pkt_edns_udp_size(x.q) < z->max_udp ?
					ldns_pkt_edns_udp_size(x.q) :
					z->max_udp;
	}
	rcode = check(&x, board);
	if (rcode >= 0) {
		o->rcode = rcode;
		rc = encode(reply_new(&x, ldns_pkt_id(x.q),
				      ldns_pkt_get_opcode(x.q), rcode, edns),
			    out, outlen);
	} else {
		o->rcode = x.kind == K_NXDOMAIN ? LDNS_RCODE_NXDOMAIN :
						  LDNS_RCODE_NOERROR;
		rc = x.set ? answer_set(&x, cache, q, edns, limit, tcp, rotate,
					out, outlen, o) :
			     answer_records(&x, edns, limit, tcp, rotate, out,
					    outlen, o);
	}
	free(x.ep);
	epset_put(x.set);
	ldns_pkt_free(x.q);
	return rc;
}
