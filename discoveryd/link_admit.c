/*
 * link_admit: the agent listener's door, before a connection is a link.
 *
 * Every accepted connection counts against its source address at once
 * (peers.c), upgraded or not, and must finish its WebSocket handshake, TLS
 * included, within heartbeat.hello_timeout of the accept, whatever it sends
 * meanwhile: keep-alive requests that never upgrade do not reset it.
 *
 * A connection is refused at the accept, before a byte is read, in this
 * order: its address is past its share of the accept rate
 * (accept_share_per_ip), its address holds max_agents_per_ip connections
 * already, or the listener is past accept_rate. The per-address checks come
 * first, so that one address's churn never spends the tokens everyone
 * else's connections need. A refused plain connection gets 503 with
 * Retry-After; a TLS one is closed (it cannot read a plain answer, and a
 * TLS handshake is what admission control saves).
 *
 * Refusals are counted by reason and logged in summary: the first at once,
 * then at most one line per reason every ADMIT_LOG_MS.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hub_int.h"
#include "log.h"

#define ADMIT_LOG_MS 10000
/* At most this much of what a refused client sent is read and dropped, so
 * that closing does not reset the connection (and lose the 503). */
#define ADMIT_DRAIN_MAX 4096

/* One accepted connection, from the accept until it upgrades or goes. */
struct link_conn {
	struct lws *wsi;
	struct peer *peer; /* held */
	int64_t accepted_ms;
	bool cut;                      /* past its deadline, being closed */
	struct link_conn *prev, *next; /* hub->pending, oldest first */
};

static const char *const refusal_names[REFUSED_KINDS] = {
	[REFUSED_RATE] = "accept_rate",
	[REFUSED_RATE_PER_IP] = "accept_share_per_ip",
	[REFUSED_PER_IP] = "max_agents_per_ip",
	[REFUSED_HANDSHAKE] = "handshake_timeout",
	[REFUSED_FULL] = "listener_full",
};

const char *link_admit_refusal_name(enum admit_refusal why)
{
	return refusal_names[why];
}

/* The numeric address, an IPv4-mapped IPv6 one as plain IPv4. */
static int addr_text(const struct sockaddr_storage *ss, char *out, size_t size)
{
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET)
		return inet_ntop(AF_INET,
				 &((const struct sockaddr_in *)ss)->sin_addr,
				 out, (socklen_t)size) ?
			       0 :
			       -1;
	if (ss->ss_family != AF_INET6)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		return inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, out,
				 (socklen_t)size) ?
			       0 :
			       -1;
	return inet_ntop(AF_INET6, &in6->sin6_addr, out, (socklen_t)size) ? 0 :
									    -1;
}

static void say(struct hub *h, enum admit_refusal why, int64_t now)
{
	struct admit_log *r = &h->refused[why];

	log_warn("admission", "reason=%s refused=%llu total=%llu last_peer=%s",
		 refusal_names[why], (unsigned long long)r->unlogged,
		 (unsigned long long)r->total, r->last_peer);
	r->unlogged = 0;
	r->logged_ms = now;
}

static void count(struct hub *h, enum admit_refusal why, const char *addr,
		  int64_t now)
{
	struct admit_log *r = &h->refused[why];

	r->total++;
	r->unlogged++;
	snprintf(r->last_peer, sizeof(r->last_peer), "%s", addr);
	if (!r->logged_ms || now - r->logged_ms >= ADMIT_LOG_MS)
		say(h, why, now);
}

/*
 * The listener's bucket: accept_rate per second, accept_burst deep. Past
 * it a thousand agents reconnecting together are spread out by their own
 * jittered backoff instead of stalling the hub.
 */
static bool global_admit(struct hub *h, int64_t now)
{
	if (h->accept_rate <= 0)
		return true;
	if (!h->accept_refill_ms)
		h->accept_tokens = h->accept_burst;
	else
		h->accept_tokens += h->accept_rate *
				    (double)(now - h->accept_refill_ms) /
				    1000.0;
	if (h->accept_tokens > h->accept_burst)
		h->accept_tokens = h->accept_burst;
	h->accept_refill_ms = now;
	if (h->accept_tokens < 1.0)
		return false;
	h->accept_tokens -= 1.0;
	return true;
}

static void refuse_fd(const struct hub *h, int fd)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
				   "Retry-After: 1\r\nContent-Length: 0\r\n"
				   "Connection: close\r\n\r\n";
	char sink[512];

	if (h->tls)
		return;
	for (size_t n = 0; n < ADMIT_DRAIN_MAX; n += sizeof(sink))
		if (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) <= 0)
			break;
	if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL) < 0)
		(void)0; /* refused either way */
}

int link_admit_filter(struct hub *h,
		      const struct lws_filter_network_conn_args *f)
{
	double share = h->accept_share;
	int64_t now = clock_mono_ms();
	char addr[LINK_PEER_MAX];
	enum admit_refusal why;
	struct peer *p;

	if (addr_text(&f->cli_addr, addr, sizeof(addr)) != 0)
		snprintf(addr, sizeof(addr), "?");
	p = peers_get(h, addr);
	if (!p) {
		log_error("admission", "error=\"out of memory\" peer=%s", addr);
		return 1;
	}
	if (h->n_conns >= h->max_conns)
		why = REFUSED_FULL;
	else if (!peers_admit(h, p, h->accept_rate * share,
			      h->accept_burst * share < 1 ?
				      1 :
				      h->accept_burst * share,
			      now))
		why = REFUSED_RATE_PER_IP;
	else if (h->max_agents_per_ip && peers_conns(p) >= h->max_agents_per_ip)
		why = REFUSED_PER_IP;
	else if (!global_admit(h, now))
		why = REFUSED_RATE;
	else
		return 0;
	count(h, why, addr, now);
	refuse_fd(h, f->accept_fd);
	return 1;
}

static void pending_unlink(struct hub *h, struct link_conn *c)
{
	*(c->prev ? &c->prev->next : &h->pending_head) = c->next;
	*(c->next ? &c->next->prev : &h->pending_tail) = c->prev;
	c->prev = c->next = NULL;
}

int link_admit_adopt(struct hub *h, struct lws *wsi)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char addr[LINK_PEER_MAX];
	struct link_conn *c;

	/* Not a connection from the listener: nothing to count. */
	if (lws_get_opaque_user_data(wsi) ||
	    getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &len) !=
		    0 ||
	    addr_text(&ss, addr, sizeof(addr)) != 0)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->peer = peers_get(h, addr))) {
		free(c);
		return -1;
	}
	peers_hold(h, c->peer);
	c->wsi = wsi;
	c->accepted_ms = clock_mono_ms();
	c->prev = h->pending_tail;
	*(h->pending_tail ? &h->pending_tail->next : &h->pending_head) = c;
	h->pending_tail = c;
	lws_set_opaque_user_data(wsi, c);
	return 0;
}

struct peer *link_admit_upgraded(struct hub *h, struct lws *wsi)
{
	struct link_conn *c = lws_get_opaque_user_data(wsi);
	struct peer *p;

	if (!c)
		return NULL;
	pending_unlink(h, c);
	p = c->peer;
	lws_set_opaque_user_data(wsi, NULL);
	free(c);
	return p;
}

void link_admit_destroyed(struct hub *h, struct lws *wsi)
{
	struct link_conn *c = lws_get_opaque_user_data(wsi);

	if (!c)
		return;
	lws_set_opaque_user_data(wsi, NULL);
	pending_unlink(h, c);
	peers_put(h, c->peer);
	free(c);
}

/*
 * The tick: connections past their handshake deadline are cut (the list is
 * in accept order, so it stops at the first still in time; one cut already
 * and not gone yet is cut again, in case lws set a timeout of its own over
 * ours), and refusals not yet logged are summed up.
 */
void link_admit_tick(struct hub *h, int64_t now)
{
	for (struct link_conn *c = h->pending_head;
	     c && now - c->accepted_ms >= h->hello_timeout_ms; c = c->next) {
		if (!c->cut)
			count(h, REFUSED_HANDSHAKE, peers_addr(c->peer), now);
		c->cut = true;
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_ESTABLISH_WITH_SERVER,
				LWS_TO_KILL_ASYNC);
	}
	for (int k = 0; k < REFUSED_KINDS; k++)
		if (h->refused[k].unlogged &&
		    now - h->refused[k].logged_ms >= ADMIT_LOG_MS)
			say(h, (enum admit_refusal)k, now);
}
