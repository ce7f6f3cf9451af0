/*
 * fuzz_gate: libFuzzer harness for the gate's client side
 * (agent/gate/client.c and request.c): the strict head checks, the body
 * framing, the pass decision of a locked gate, pipelining and the answers,
 * as one connection plays them.
 *
 * The input is what a client sends, byte for byte. The harness #includes
 * client.c and runs it for real on an event loop (loop.c), over one end of
 * a socketpair, with request.c, the admission table, forward.c, path.c and
 * ring.c as they are. Two seams: the gate's state is a fixed locked view
 * passing /healthz and /static/ (state.c needs libagent), and the upstream side
 * is replaced by a stand-in that answers every exchange it is given at once (a
 * 200 with a small body, or a failure) instead of connecting.
 *
 * Checks, beyond "no crash, no leak, no undefined behaviour, no hang":
 *   - the locked gate hands the upstream side only requests whose target
 *     passes (path_passes on a pass prefix) and that are no upgrade;
 *   - a request handed on has a head the upstream could parse as one
 *     request: http-parser reads exactly one message head from x->out;
 *   - what is written back to the client starts with a whole HTTP
 *     response head, as http-parser reads it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "path.h"
#include "upstream.h"

static void fuzz_upstream_start(struct upstream_pool *p, struct exchange *x);
static void fuzz_upstream_send(struct exchange *x);
static void fuzz_upstream_recv(struct exchange *x);
static void fuzz_upstream_abort(struct exchange *x);
static int fuzz_upstream_detach(struct exchange *x);

#define upstream_start  fuzz_upstream_start
#define upstream_send   fuzz_upstream_send
#define upstream_recv   fuzz_upstream_recv
#define upstream_abort  fuzz_upstream_abort
#define upstream_detach fuzz_upstream_detach
#include "../../agent/gate/client.c"
#undef upstream_start
#undef upstream_send
#undef upstream_recv
#undef upstream_abort
#undef upstream_detach

static char *pass_list[] = { (char *)"/healthz", (char *)"/static/" };

#define LOCKED_HEAD                                                            \
	"HTTP/1.1 423 Locked\r\nContent-Type: application/json"                \
	"\r\nCache-Control: no-store\r\nRetry-After: 5\r\nVary: Accept\r\n"    \
	"Content-Length: 2\r\n"
#define ANSWER(head, body, status)                                             \
	{                                                                      \
		(char *)(head), sizeof(head) - 1, (char *)(body),              \
			sizeof(body) - 1, (status)                             \
	}
/* As state.c builds them, for a locked gate. */
static struct gate_view view = {
	.open = false,
	.locked_status = 423,
	.n_pass = 2,
	.pass = pass_list,
	.locked_html = ANSWER(LOCKED_HEAD, "<>", 423),
	.locked_json = ANSWER(LOCKED_HEAD, "{}", 423),
	.state_json =
		ANSWER("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", "{}", 200),
	.check = ANSWER("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n", "",
			403),
};
static int answer_mode; /* what the stand-in upstream does next */

const struct gate_view *gstate_view(const struct gate_state *s)
{
	(void)s;
	return &view;
}

bool gstate_passes(const struct gate_view *v, const char *target)
{
	return path_passes(target, v->pass, v->n_pass);
}

static void fail(const char *why)
{
	fprintf(stderr, "fuzz_gate: %s\n", why);
	abort();
}

/* http-parser reads exactly one request head from the gate's output. */
static int count_complete(http_parser *hp)
{
	(*(int *)hp->data)++;
	return 1; /* the head is all we check */
}

static void check_request_head(const struct buf *out)
{
	http_parser hp;
	http_parser_settings s = { .on_headers_complete = count_complete };
	int heads = 0;
	size_t n;

	http_parser_init(&hp, HTTP_REQUEST);
	hp.data = &heads;
	n = http_parser_execute(&hp, &s, out->p, out->len);
	if (heads != 1 || (n != out->len && HTTP_PARSER_ERRNO(&hp) != HPE_OK))
		fail("the request head the upstream gets is not one head");
}

static void fuzz_upstream_start(struct upstream_pool *p, struct exchange *x)
{
	struct client *c = x->owner;

	(void)p;
	if (x->upgrade || !path_passes(c->target.p, pass_list, 2))
		fail("a locked gate proxied a target that does not pass");
	check_request_head(&x->out);
	x->in_flight = true;
	x->head.len = 0;
	if (answer_mode++ % 3 == 2) {
		x->in_flight = false;
		x->ops->done(x, 502, "fuzz: the upstream failed");
		return;
	}
	buf_add(&x->head, "Content-Type\0text/plain\0", 24);
	x->status = 200;
	x->resp_length = 2;
	x->head_done = true;
	x->ops->head(x);
	if (!x->in_flight)
		return;
	ring_put(&x->down, "ok", 2);
	x->ops->body(x);
	if (!x->in_flight)
		return;
	x->in_flight = false;
	x->ops->done(x, 0, NULL);
}

void upstream_pool_init(struct upstream_pool *p, struct loop *loop,
			const struct gconf *conf)
{
	memset(p, 0, sizeof(*p));
	p->loop = loop;
	p->conf = conf;
}

void upstream_pool_close(struct upstream_pool *p)
{
	(void)p;
}
static void fuzz_upstream_send(struct exchange *x)
{
	(void)x;
}
static void fuzz_upstream_recv(struct exchange *x)
{
	(void)x;
}
static void fuzz_upstream_abort(struct exchange *x)
{
	x->in_flight = false;
}
static int fuzz_upstream_detach(struct exchange *x)
{
	(void)x;
	return -1;
}

/* What came back starts with a response head http-parser reads whole.
 * (Its body cannot be checked from here: an answer to HEAD has none.) */
static int on_response_head(http_parser *hp)
{
	http_parser_pause(hp, 1);
	return 1;
}

static void check_responses(const char *p, size_t n)
{
	http_parser hp;
	http_parser_settings s = { .on_headers_complete = on_response_head };

	if (!n)
		return;
	if (n < 9 || memcmp(p, "HTTP/1.1 ", 9))
		fail("the gate wrote something that is not a response");
	http_parser_init(&hp, HTTP_RESPONSE);
	http_parser_execute(&hp, &s, p, n);
	if (HTTP_PARSER_ERRNO(&hp) != HPE_PAUSED)
		fail("the gate's first answer has no whole head");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct gconf conf = {
		.upstream = (char *)"http://127.0.0.1:1",
		.upstream_prefix = "",
		.locked_status = 423,
		.retry_after_ms = 5000,
		.idle_timeout_ms = 60000,
		.header_timeout_ms = 10000,
		.client_timeout_ms = 60000,
		.max_connections = 16,
		.max_per_ip = 16,
		.head_max = 32768,
		.upstream_idle = 4,
		.buffer = 32768,
		.connect_timeout_ms = 5000,
		.upstream_timeout_ms = 60000,
	};
	struct sockaddr_in peer = { .sin_family = AF_INET,
				    .sin_addr.s_addr = htonl(0x7f000001) };
	struct gate_env env = { .conf = &conf,
				.fwd = { .prefix = "",
					 .authority = "app",
					 .via = "1.1 discovery-gate" } };
	struct loop loop;
	struct upstream_pool pool;
	struct clients set;
	char out[1 << 16];
	size_t got = 0;
	bool overflow = false;
	int sv[2];

	if (size > 256 * 1024 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		return 0;
	env.admit = admit_new(16, 16);
	loop_init(&loop);
	upstream_pool_init(&pool, &loop, &conf);
	clients_init(&set, &env, &loop, &pool);
	answer_mode = 0;
	admit_take(env.admit, (struct sockaddr *)&peer);
	clients_add(&set, sv[0], (struct sockaddr *)&peer, sizeof(peer));
	for (size_t off = 0, round = 0; round < 64; round++) {
		ssize_t k;

		if (off < size) {
			k = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
			if (k > 0)
				off += (size_t)k;
			if (off == size)
				shutdown(sv[1], SHUT_WR);
		}
		loop_run_once(&loop, 0);
		while ((k = recv(sv[1], out + got, sizeof(out) - got, 0)) > 0) {
			got += (size_t)k;
			if (got == sizeof(out)) {
				got = 0; /* too much to check whole */
				overflow = true;
			}
		}
		if (!set.n && off == size)
			break;
	}
	if (!overflow)
		check_responses(out, got);
	clients_close_all(&set);
	upstream_pool_close(&pool);
	loop_release(&loop);
	admit_free(env.admit);
	close(sv[1]);
	return 0;
}
