/*
 * dns: the server's sockets and its UDP thread (see dns.h). The UDP
 * thread reads a batch of datagrams, answers each from the board through
 * dns_answer and sends the answers back as one batch; a source over its
 * rate gets nothing (docs/dns.md says why a drop, not REFUSED). The TCP
 * side is dns_tcp.c, on a thread of its own.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "conf.h"
#include "dns.h"
#include "dns_int.h"
#include "log.h"

/* Datagrams read (and answered) per system call. */
#define UDP_BATCH 32
/* The kernel's queue for the UDP socket: a burst waits there, not lost. */
#define UDP_RCVBUF (4 << 20)

struct dns {
	struct dns_zone zone;
	struct epboard *board;
	struct dns_stats stats;
	struct dns_rate rate; /* the UDP thread's */
	int udp_fd, wake_fd;
	bool udp_running;
	pthread_t udp_thread;
	struct dns_tcp *tcp;
	char listen_address[CONF_ADDR_TEXT];
};

static const char *const rcode_names[DNS_RC_KINDS] = {
	[DNS_RC_NOERROR] = "NOERROR",   [DNS_RC_FORMERR] = "FORMERR",
	[DNS_RC_SERVFAIL] = "SERVFAIL", [DNS_RC_NXDOMAIN] = "NXDOMAIN",
	[DNS_RC_NOTIMP] = "NOTIMP",     [DNS_RC_REFUSED] = "REFUSED",
};

void dns_count(struct dns_stats *s, bool tcp, const struct dns_outcome *o)
{
	static const int kinds[] = {
		[LDNS_RCODE_NOERROR] = DNS_RC_NOERROR,
		[LDNS_RCODE_FORMERR] = DNS_RC_FORMERR,
		[LDNS_RCODE_SERVFAIL] = DNS_RC_SERVFAIL,
		[LDNS_RCODE_NXDOMAIN] = DNS_RC_NXDOMAIN,
		[LDNS_RCODE_NOTIMPL] = DNS_RC_NOTIMP,
		[LDNS_RCODE_REFUSED] = DNS_RC_REFUSED,
	};

	if (o->drop) {
		atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
		return;
	}
	if (o->truncated)
		atomic_fetch_add_explicit(&s->truncated, 1,
					  memory_order_relaxed);
	if (o->rcode >= 0 && o->rcode <= LDNS_RCODE_REFUSED)
		atomic_fetch_add_explicit(&s->answers[tcp][kinds[o->rcode]], 1,
					  memory_order_relaxed);
}

/* ---- UDP ----------------------------------------------------------- */

struct udp_batch {
	struct mmsghdr in[UDP_BATCH], out[UDP_BATCH];
	struct iovec in_iov[UDP_BATCH], out_iov[UDP_BATCH];
	struct sockaddr_storage from[UDP_BATCH];
	uint8_t buf[UDP_BATCH][DNS_QUERY_MAX];
	uint8_t *answer[UDP_BATCH];
	struct dns_cache *cache;
};

static void batch_init(struct udp_batch *b)
{
	memset(b, 0, sizeof(*b));
	for (int i = 0; i < UDP_BATCH; i++) {
		b->in_iov[i] = (struct iovec){ b->buf[i], sizeof(b->buf[i]) };
		b->in[i].msg_hdr.msg_iov = &b->in_iov[i];
		b->in[i].msg_hdr.msg_iovlen = 1;
		b->in[i].msg_hdr.msg_name = &b->from[i];
	}
}

/* Answer what one recvmmsg read; returns how many answers go out. */
static unsigned answer_batch(struct dns *d, struct udp_batch *b, int n,
			     uint64_t *rotate)
{
	int64_t now = clock_mono_us();
	unsigned k = 0;

	for (int i = 0; i < n; i++) {
		struct sockaddr *from = (struct sockaddr *)&b->from[i];
		struct dns_outcome o;
		size_t len;
		uint8_t *out;

		if (!dns_rate_take(&d->rate, from, now)) {
			atomic_fetch_add_explicit(&d->stats.rate_limited, 1,
						  memory_order_relaxed);
			continue;
		}
		/* A datagram cut short (MSG_TRUNC) is answered as read: it
		 * fails to parse, FORMERR. */
		if (dns_answer(&d->zone, d->board, b->cache, b->buf[i],
			       b->in[i].msg_len, false, (*rotate)++, &out, &len,
			       &o) != 0) {
			o = (struct dns_outcome){ .rcode =
							  LDNS_RCODE_SERVFAIL };
			dns_count(&d->stats, false, &o);
			continue;
		}
		dns_count(&d->stats, false, &o);
		if (!out)
			continue;
		b->answer[k] = out;
		b->out_iov[k] = (struct iovec){ out, len };
		b->out[k].msg_hdr = (struct msghdr){
			.msg_name = from,
			.msg_namelen = b->in[i].msg_hdr.msg_namelen,
			.msg_iov = &b->out_iov[k],
			.msg_iovlen = 1,
		};
		k++;
	}
	return k;
}

static void send_batch(struct dns *d, struct udp_batch *b, unsigned k)
{
	unsigned sent = 0;

	while (sent < k) {
		int n = sendmmsg(d->udp_fd, b->out + sent, k - sent, 0);

		if (n < 0 && errno == EINTR)
			continue;
		/* A full socket buffer, or a source that cannot be reached:
		 * that answer is lost, as UDP may lose it anyway. */
		sent += n > 0 ? (unsigned)n : 1;
	}
	for (unsigned i = 0; i < k; i++)
		free(b->answer[i]);
}

static void *udp_main(void *arg)
{
	struct dns *d = arg;
	struct udp_batch *b = malloc(sizeof(*b));
	struct pollfd p[2] = { { .fd = d->udp_fd, .events = POLLIN },
			       { .fd = d->wake_fd, .events = POLLIN } };
	uint64_t rotate = 0;

	if (b)
		batch_init(b);
	if (!b || !(b->cache = dns_cache_new())) {
		log_error("dns", "error=\"no memory for the UDP thread\"");
		free(b);
		return NULL;
	}
	for (;;) {
		int n;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		for (int i = 0; i < UDP_BATCH; i++)
			b->in[i].msg_hdr.msg_namelen = sizeof(b->from[i]);
		n = recvmmsg(d->udp_fd, b->in, UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n > 0)
			send_batch(d, b, answer_batch(d, b, n, &rotate));
	}
	dns_cache_free(b->cache);
	free(b);
	return NULL;
}

/* ---- start and stop ------------------------------------------------- */

static int bind_socket(const struct sockaddr_storage *ss, int type)
{
	socklen_t len = ss->ss_family == AF_INET6 ?
				sizeof(struct sockaddr_in6) :
				sizeof(struct sockaddr_in);
	int fd = socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	if (type == SOCK_STREAM)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) != 0 ||
	    (type == SOCK_STREAM && listen(fd, 128) != 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET6 ?
			     ((const struct sockaddr_in6 *)ss)->sin6_port :
			     ((const struct sockaddr_in *)ss)->sin_port);
}

static void set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

/*
 * UDP and TCP on one port. With port 0 the kernel picks the UDP port, and
 * TCP takes the same one; should that be taken, a few more tries.
 */
static int bind_both(struct dns *d, const struct conf_addr *addr, int *tcp_fd,
		     char *err, size_t errlen)
{
	struct sockaddr_storage ss, bound;
	socklen_t len = sizeof(bound);
	struct conf_addr a = *addr;
	int rcvbuf = UDP_RCVBUF;

	if (conf_addr_resolve(addr, "listen.dns", &ss, err, errlen) != 0)
		return -1;
	for (int tries = 0; tries < (addr->port ? 1 : 16); tries++) {
		d->udp_fd = bind_socket(&ss, SOCK_DGRAM);
		if (d->udp_fd < 0)
			break;
		len = sizeof(bound);
		getsockname(d->udp_fd, (struct sockaddr *)&bound, &len);
		set_port(&ss, port_of(&bound));
		*tcp_fd = bind_socket(&ss, SOCK_STREAM);
		if (*tcp_fd >= 0) {
			setsockopt(d->udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
				   sizeof(rcvbuf));
			a.port = port_of(&bound);
			conf_addr_format(&a, d->listen_address,
					 sizeof(d->listen_address));
			return 0;
		}
		close(d->udp_fd);
		d->udp_fd = -1;
		set_port(&ss, addr->port);
	}
	snprintf(err, errlen, "listen.dns: cannot bind %s:%d (UDP and TCP): %s",
		 addr->host, addr->port, strerror(errno));
	return -1;
}

struct dns *dns_start(const struct dconf *conf, struct epboard *board,
		      char *err, size_t errlen)
{
	struct dns *d = calloc(1, sizeof(*d));
	int tcp_fd = -1;

	if (!d) {
		snprintf(err, errlen, "dns: no memory");
		return NULL;
	}
	d->udp_fd = d->wake_fd = -1;
	d->board = board;
	dns_rate_init(&d->rate, (double)conf->dns_rate_per_source,
		      (double)conf->dns_burst);
	if (dns_zone_init(&d->zone, conf->dns_domain,
			  (uint32_t)(conf->dns_ttl_ms / 1000),
			  (uint32_t)(conf->dns_negative_ttl_ms / 1000),
			  (uint16_t)conf->dns_max_udp) != 0) {
		snprintf(err, errlen, "dns: no memory");
		free(d);
		return NULL;
	}
	if (bind_both(d, &conf->listen_dns.addr, &tcp_fd, err, errlen) != 0) {
		dns_stop(d);
		return NULL;
	}
	/* The TCP side takes tcp_fd, even when it fails. */
	d->tcp = dns_tcp_start(tcp_fd, &d->zone, board, &d->stats,
			       (double)conf->dns_rate_per_source,
			       (double)conf->dns_burst,
			       (unsigned)conf->dns_max_tcp,
			       conf->dns_tcp_timeout_ms);
	d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!d->tcp || d->wake_fd < 0) {
		snprintf(err, errlen, "dns: cannot start: %s", strerror(errno));
		dns_stop(d);
		return NULL;
	}
	if (pthread_create(&d->udp_thread, NULL, udp_main, d) != 0) {
		snprintf(err, errlen, "dns: cannot start the UDP thread");
		dns_stop(d);
		return NULL;
	}
	d->udp_running = true;
	return d;
}

const char *dns_listen_address(const struct dns *d)
{
	return d->listen_address;
}

void dns_stop(struct dns *d)
{
	uint64_t one = 1;

	if (!d)
		return;
	if (d->udp_running) {
		if (write(d->wake_fd, &one, sizeof(one)) < 0)
			log_error("dns",
				  "error=\"cannot wake the UDP thread\"");
		pthread_join(d->udp_thread, NULL);
	}
	dns_tcp_stop(d->tcp);
	if (d->udp_fd >= 0)
		close(d->udp_fd);
	if (d->wake_fd >= 0)
		close(d->wake_fd);
	dns_zone_release(&d->zone);
	free(d);
}

/* ---- /metrics ----------------------------------------------------------- */

static double get(atomic_uint_least64_t *v)
{
	return (double)atomic_load_explicit(v, memory_order_relaxed);
}

void dns_metrics(struct dns *d, struct metrics_text *t)
{
	char label[64];

	metrics_family(t, "discovery_dns_queries_total", "counter",
		       "DNS queries answered, by transport and rcode.");
	for (int tcp = 0; tcp < 2; tcp++)
		for (int k = 0; k < DNS_RC_KINDS; k++) {
			snprintf(label, sizeof(label),
				 "transport=\"%s\",rcode=\"%s\"",
				 tcp ? "tcp" : "udp", rcode_names[k]);
			metrics_sample(t, "discovery_dns_queries_total", label,
				       get(&d->stats.answers[tcp][k]));
		}
	metrics_family(t, "discovery_dns_truncated_total", "counter",
		       "UDP answers sent with TC (too large; complete over "
		       "TCP).");
	metrics_sample(t, "discovery_dns_truncated_total", NULL,
		       get(&d->stats.truncated));
	metrics_family(t, "discovery_dns_rate_limited_total", "counter",
		       "DNS queries dropped: their source was over "
		       "dns.rate_per_source.");
	metrics_sample(t, "discovery_dns_rate_limited_total", NULL,
		       get(&d->stats.rate_limited));
	metrics_family(t, "discovery_dns_dropped_total", "counter",
		       "DNS packets not answered: shorter than a header, or "
		       "responses.");
	metrics_sample(t, "discovery_dns_dropped_total", NULL,
		       get(&d->stats.dropped));
	metrics_family(t, "discovery_dns_tcp_connections", "gauge",
		       "Open DNS TCP connections.");
	metrics_sample(t, "discovery_dns_tcp_connections", NULL,
		       (double)atomic_load(&d->stats.tcp_open));
	metrics_family(t, "discovery_dns_tcp_refused_total", "counter",
		       "DNS TCP connections closed at once: dns.max_tcp were "
		       "open.");
	metrics_sample(t, "discovery_dns_tcp_refused_total", NULL,
		       get(&d->stats.tcp_refused));
	metrics_family(t, "discovery_dns_tcp_timeouts_total", "counter",
		       "DNS TCP connections closed idle or stalled past "
		       "dns.tcp_timeout.");
	metrics_sample(t, "discovery_dns_tcp_timeouts_total", NULL,
		       get(&d->stats.tcp_timeouts));
	metrics_family(t, "discovery_dns_tcp_errors_total", "counter",
		       "DNS TCP connections closed on a bad length or a "
		       "reset.");
	metrics_sample(t, "discovery_dns_tcp_errors_total", NULL,
		       get(&d->stats.tcp_errors));
}
