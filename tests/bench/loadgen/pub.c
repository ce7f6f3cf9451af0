/*
 * pub.c: one publisher connection to the server's trigger address (-H),
 * for the rounds' trigger (trigger.c, the raw TCP dialects) and the
 * sustained phases (sustain.c). It builds the greeting and each publish
 * request, and finds the answers in what comes back:
 *
 *   HTTP   the trigger call (-t, -d), kept alive; the answer is the
 *          response, its "seq" the event's.
 *   redis  PUBLISH bench EVENT; the answer is the integer reply.
 *   nats   CONNECT, then PUB bench EVENT and a PING; the PONG is the
 *          answer: the server has taken the PUB before it.
 *   mqtt   CONNECT, then a QoS 0 PUBLISH and a PINGREQ; the PINGRESP is
 *          the answer, for the same reason.
 *
 * For the raw TCP dialects the event is the floor's (tests/bench/floor.c:
 * discoveryd's broadcast in shape and size), with the publisher's own seq.
 */
#include "loadgen.h"

#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define EVENT_FMT                                                              \
	"{\"type\":\"event\",\"epoch\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\","  \
	"\"seq\":%llu,\"kind\":\"command\",\"command\":\"Reload\","            \
	"\"header\":{\"source\":\"bench\"},\"value\":{\"why\":\"bench\"}}"

/* The raw TCP dialects' seqs: one counter for the rounds and the
 * sustained phases, so that no two publishes share one. */
uint64_t pub_next_seq(void)
{
	static uint64_t seq;

	return ++seq;
}

int pub_event(uint64_t seq, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, EVENT_FMT, (unsigned long long)seq);

	return n > 0 && (size_t)n < cap ? n : -1;
}

/* A blocking connection to -H, from source address k (round-robin over
 * -b), so that many publishers stay within a per-address limit. */
int pub_connect(const struct opts *o, int k)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->nsrc && bind(fd, (const struct sockaddr *)&o->src[k % o->nsrc],
			    sizeof(o->src[0])) != 0) {
		close(fd);
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&o->http_sa,
		    sizeof(o->http_sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* What a new connection sends first; its length (0: nothing). k names
 * the publisher (MQTT client ids must differ: the trigger's is -1). */
int pub_hello(const struct opts *o, int k, char *buf, size_t cap)
{
	char id[32];
	int idl;

	switch (o->dialect) {
	case DIALECT_NATS:
		return snprintf(buf, cap,
				"CONNECT {\"verbose\":false,\"pedantic\":false,"
				"\"protocol\":1}\r\n");
	case DIALECT_MQTT:
		idl = snprintf(id, sizeof(id), "lgpub-%d-%d", (int)getpid(), k);
		if (cap < (size_t)idl + 14)
			return -1;
		memcpy(buf, "\x10\x00\x00\x04MQTT\x04\x02\x00\x00\x00", 13);
		buf[1] = (char)(12 + idl);
		buf[13] = (char)idl;
		memcpy(buf + 14, id, (size_t)idl);
		return 14 + idl;
	default: return 0;
	}
}

static int http_request(const struct opts *o, char *buf, size_t cap)
{
	size_t blen = o->body ? strlen(o->body) : 0;
	int n = snprintf(buf, cap,
			 "%s %s HTTP/1.1\r\nHost: %s\r\n"
			 "%sContent-Length: %zu\r\n\r\n%s",
			 o->method, o->trigger_path, o->http,
			 blen ? "Content-Type: application/json\r\n" : "", blen,
			 blen ? o->body : "");

	return n > 0 && (size_t)n < cap ? n : -1;
}

/* MQTT: a QoS 0 PUBLISH of ev to bench, then a PINGREQ. */
static int mqtt_publish(char *buf, size_t cap, const char *ev, int evl)
{
	size_t rl = 2 + 5 + (size_t)evl, n = 0;

	if (cap < rl + 8)
		return -1;
	buf[n++] = 0x30;
	do { /* the remaining length, 7 bits a byte */
		buf[n++] = (char)((rl & 0x7f) | (rl > 0x7f ? 0x80 : 0));
		rl >>= 7;
	} while (rl);
	memcpy(buf + n, "\x00\x05" CHANNEL, 7);
	n += 7;
	memcpy(buf + n, ev, (size_t)evl);
	n += (size_t)evl;
	buf[n++] = (char)0xc0;
	buf[n++] = 0;
	return (int)n;
}

/* One publish request (seq: the raw TCP dialects' event seq). */
int pub_request(const struct opts *o, uint64_t seq, char *buf, size_t cap)
{
	char ev[512];
	int evl = pub_event(seq, ev, sizeof(ev)), n;

	if (evl < 0)
		return -1;
	switch (o->dialect) {
	case DIALECT_REDIS:
		n = snprintf(buf, cap,
			     "*3\r\n$7\r\nPUBLISH\r\n$5\r\n" CHANNEL
			     "\r\n$%d\r\n%s\r\n",
			     evl, ev);
		break;
	case DIALECT_NATS:
		n = snprintf(buf, cap, "PUB " CHANNEL " %d\r\n%s\r\nPING\r\n",
			     evl, ev);
		break;
	case DIALECT_MQTT: return mqtt_publish(buf, cap, ev, evl);
	default: return http_request(o, buf, cap);
	}
	return n > 0 && (size_t)n < cap ? n : -1;
}

/* ---- answers ------------------------------------------------------------ */

static ssize_t http_answer(const char *buf, size_t len, struct answer *a)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4), *cl, *conn;
	size_t head, clen = 0;

	if (!end)
		return 0;
	head = (size_t)(end - buf) + 4;
	if (sscanf(buf, "HTTP/1.%*d %d", &a->status) != 1)
		return -1;
	cl = strcasestr(buf, "\r\ncontent-length:");
	if (cl && cl < end)
		clen = strtoul(cl + 17, NULL, 10);
	conn = strcasestr(buf, "\r\nconnection: close");
	a->close = !cl || cl > end || (conn && conn < end);
	if (len < head + clen)
		return 0;
	a->seq = dialect_find_seq(buf + head, clen);
	return (ssize_t)(head + clen);
}

static ssize_t line_answer(const struct opts *o, const char *buf, size_t len,
			   struct answer *a)
{
	const char *crlf = memmem(buf, len, "\r\n", 2);

	if (!crlf)
		return 0;
	if (o->dialect == DIALECT_REDIS)
		a->status = buf[0] == ':' ? 200 : 500;
	else if (strncmp(buf, "PONG", 4) == 0)
		a->status = 200;
	else if (strncmp(buf, "PING", 4) == 0)
		a->ping = true;
	else if (strncmp(buf, "-ERR", 4) == 0)
		a->status = 500;
	else
		a->ignore = true; /* INFO, +OK */
	return crlf + 2 - buf;
}

static ssize_t mqtt_answer(const unsigned char *p, size_t len, struct answer *a)
{
	size_t rl = 0, i = 1;
	bool whole = false;

	while (i < len && i < 5) {
		rl |= (size_t)(p[i] & 0x7f) << (7 * (i - 1));
		if (!(p[i++] & 0x80)) {
			whole = true;
			break;
		}
	}
	if (!whole || len < i + rl)
		return 0;
	if (p[0] >> 4 == 13)
		a->status = 200; /* PINGRESP */
	else if (p[0] >> 4 == 2 && rl >= 2 && p[i + 1] != 0)
		a->status = 500; /* CONNACK: refused */
	else
		a->ignore = true;
	return (ssize_t)(i + rl);
}

/* One answer at buf (NUL-terminated after len): bytes used, 0 when it is
 * not all here, -1 when it cannot be read. */
ssize_t pub_answer(const struct opts *o, const char *buf, size_t len,
		   struct answer *a)
{
	memset(a, 0, sizeof(*a));
	if (!len)
		return 0;
	switch (o->dialect) {
	case DIALECT_REDIS:
	case DIALECT_NATS: return line_answer(o, buf, len, a);
	case DIALECT_MQTT:
		return mqtt_answer((const unsigned char *)buf, len, a);
	default: return http_answer(buf, len, a);
	}
}
