/*
 * dialect.c: what the messages on a link mean, per server (-m). Each
 * dialect says which upgrade path and subprotocol to ask for, what to do
 * once upgraded, which message welcomes the link, which is the event being
 * timed (and its seq, matched against the trigger's answer), and what needs
 * an answer.
 *
 *   discovery  discovery.v1 (docs/protocol.md): a hello after the upgrade;
 *              {"type":"welcome"} links; {"type":"event"} is timed.
 *   plain      a bare WebSocket (the floor, FastAPI): the 101 links; any
 *              text message is the event.
 *   engineio   socket.io 4 over Engine.IO v4's websocket transport: the
 *              server's open packet `0{...}` is answered with the namespace
 *              connect `40`; its `40{"sid":..}` links; `42["event",..]` is
 *              timed; a ping `2` is answered with a pong `3`.
 *   redis, nats, mqtt  raw TCP (tcp.c): the published message's payload
 *              is the event, its seq the one the publisher put in it.
 */
#include "loadgen.h"

#include <stdio.h>
#include <string.h>

#define ENGINEIO_PATH "/socket.io/?EIO=4&transport=websocket"

const char *dialect_path(const struct opts *o)
{
	if (o->path)
		return o->path;
	return o->dialect == DIALECT_ENGINEIO ? ENGINEIO_PATH : "/";
}

const char *dialect_subprotocol(const struct opts *o)
{
	return o->dialect == DIALECT_DISCOVERY ? "discovery.v1" : NULL;
}

/* The first number under key ("\"seq\":") in p[0..n), or 0. */
static uint64_t find_number(const char *p, size_t n, const char *key)
{
	size_t k = strlen(key);
	const char *s = memmem(p, n, key, k);
	uint64_t v = 0;

	if (!s)
		return 0;
	for (s += k; s < p + n && *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (uint64_t)(*s - '0');
	return v;
}

uint64_t dialect_find_seq(const char *p, size_t n)
{
	return find_number(p, n, "\"seq\":");
}

static int send_hello(struct worker *w, struct link *l)
{
	char msg[MAX_OUT];
	int n = snprintf(msg, sizeof(msg),
			 "{\"type\":\"hello\",\"service\":\"%s\",\"instance\":"
			 "\"%s-%u\",\"depends_on\":[\"cache\"]%s%s%s}",
			 w->o->service, w->o->prefix,
			 w->base + (uint32_t)(l - w->links),
			 w->o->watch ? ",\"watch\":[\"" : "",
			 w->o->watch ? w->o->watch : "",
			 w->o->watch ? "\"]" : "");

	if (n < 0 || (size_t)n >= sizeof(msg))
		return -1;
	return ws_send(w, l, 0x1, msg, (size_t)n);
}

/* The 101 was right. 0, or -1 when the link was failed. */
int dialect_upgraded(struct worker *w, struct link *l)
{
	l->state = L_HELLO;
	switch (w->o->dialect) {
	case DIALECT_DISCOVERY:
		if (send_hello(w, l) != 0) {
			link_fail_errno(w, l, "send hello");
			return -1;
		}
		return 0;
	case DIALECT_PLAIN: link_welcomed(w, l); return 0;
	case DIALECT_ENGINEIO: return 0; /* the open packet comes next */
	default: return 0;
	}
	return 0;
}

static enum kind engineio_kind(const char *p, size_t n)
{
	if (n >= 1 && p[0] == '0')
		return K_OPEN;
	if (n == 1 && p[0] == '2')
		return K_PING;
	if (n >= 2 && p[0] == '4' && p[1] == '0')
		return K_WELCOME;
	if (n >= 2 && p[0] == '4' && p[1] == '2')
		return K_EVENT;
	return K_OTHER;
}

/* The first (or only) part of a message: what kind is it? */
void dialect_message_start(const struct worker *w, struct link *l, int op,
			   const char *p, size_t n)
{
	l->kind = K_OTHER;
	l->seq = 0;
	if (op != 0x1)
		return;
	switch (w->o->dialect) {
	case DIALECT_DISCOVERY:
		/* The timed message first: its payload may say anything. */
		if (w->o->watch ?
			    memmem(p, n, "\"type\":\"endpoints\"", 18) != NULL :
			    memmem(p, n, "\"type\":\"event\"", 14) != NULL)
			l->kind = K_EVENT;
		else if (memmem(p, n, "\"type\":\"welcome\"", 16))
			l->kind = K_WELCOME;
		break;
	case DIALECT_PLAIN: l->kind = K_EVENT; break;
	case DIALECT_ENGINEIO: l->kind = (uint8_t)engineio_kind(p, n); break;
	default: break;
	}
	if (l->kind == K_EVENT)
		l->seq = w->o->watch ? find_number(p, n, "\"index\":") :
				       dialect_find_seq(p, n);
}

int dialect_parse(const char *s)
{
	static const char *const names[] = {
		[DIALECT_DISCOVERY] = "discovery", [DIALECT_PLAIN] = "plain",
		[DIALECT_ENGINEIO] = "engineio",   [DIALECT_REDIS] = "redis",
		[DIALECT_NATS] = "nats",           [DIALECT_MQTT] = "mqtt",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

static void event_arrived(struct worker *w, struct link *l)
{
	if (l->state != L_LIVE)
		return;
	if (w->o->shm &&
	    atomic_load_explicit(&w->o->shm->mode, memory_order_relaxed) !=
		    MODE_ROUNDS) {
		sustain_delivery(w, l);
		return;
	}
	if (!w->armed || l->t_event)
		return;
	l->t_event = mono_ns();
	l->ev_seq = l->seq;
	w->got++;
}

/* A raw TCP dialect's whole message (tcp.c): its payload is the event. */
void dialect_event(struct worker *w, struct link *l, const char *p, size_t n)
{
	l->seq = dialect_find_seq(p, n);
	event_arrived(w, l);
}

/* The message is complete: act on it. -1 when the link was failed. */
int dialect_message_end(struct worker *w, struct link *l)
{
	enum kind k = l->kind;

	l->kind = K_OTHER;
	switch (k) {
	case K_WELCOME:
		if (l->state == L_HELLO)
			link_welcomed(w, l);
		return 0;
	case K_EVENT: event_arrived(w, l); return 0;
	case K_OPEN:
		if (ws_send(w, l, 0x1, "40", 2) != 0) {
			link_fail_errno(w, l, "send socket.io connect");
			return -1;
		}
		return 0;
	case K_PING:
		if (ws_send(w, l, 0x1, "3", 1) != 0) {
			link_fail_errno(w, l, "send Engine.IO pong");
			return -1;
		}
		return 0;
	case K_OTHER: return 0;
	}
	return 0;
}
