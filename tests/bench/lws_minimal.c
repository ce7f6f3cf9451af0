/*
 * lws_minimal: the least libwebsockets server that does discoveryd's job
 * on its agent listener: it accepts WebSocket links and broadcasts one
 * event to all of them. It is a measuring instrument (make bench's
 * `lws-minimal`): the context is created with the options and sizes
 * discoveryd's hub uses (discoveryd/hub.c: validate UTF-8, no IPv6, one
 * service thread, a 16 KiB serving buffer, a 10 s timeout, lws's idle
 * check off) and the protocol has discoveryd's receive buffer and packet
 * size (discoveryd/link.c), so that the memory a link costs here is what
 * lws itself costs, and what discoveryd spends above it is its own.
 *
 *   lws_minimal [-a HOST:PORT]     (127.0.0.1:0 by default)
 *
 * Links ask for no subprotocol (loadgen -m plain). Any HTTP request on
 * the same port is the trigger: it frames the event (floor.c's, shaped
 * like discoveryd's broadcast) once, asks every link for a writable
 * callback, each writes it in its turn, and the request is answered
 * {"seq":N}. A link writes only the newest event: enough for one burst
 * at a time (the rounds), not for sustained delivery, which it is not
 * run for. Once it listens it prints
 * "ready agents=HOST:PORT http=HOST:PORT".
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Kept equal to discoveryd's by hand: this server must not link the
 * daemon's code, and a change there is a change here. */
#define RX_BUFFER_SIZE 128 /* discoveryd/link.c */
#define TX_PACKET_SIZE (256 * 1024)
#define SERV_BUF_SIZE  (16 * 1024) /* discoveryd/hub.c */
#define TIMEOUT_SECS   10
#define EVENT_MAX      512

#define EVENT_FMT                                                              \
	"{\"type\":\"event\",\"epoch\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\","  \
	"\"seq\":%llu,\"kind\":\"command\",\"command\":\"Reload\","            \
	"\"header\":{\"source\":\"bench\"},\"value\":{\"why\":\"bench\"}}"

struct session {
	unsigned long long sent; /* the seq this link last wrote */
	unsigned long long http; /* the seq an HTTP request is answered */
};

static unsigned long long seq;
static unsigned char event[LWS_PRE + EVENT_MAX];
static size_t event_len;
static volatile sig_atomic_t stopping, evlib;
static const lws_retry_bo_t no_idle_check;

static void broadcast(struct lws *wsi)
{
	int n = snprintf((char *)event + LWS_PRE, EVENT_MAX, EVENT_FMT, ++seq);

	event_len = n > 0 && n < EVENT_MAX ? (size_t)n : 0;
	lws_callback_on_writable_all_protocol(lws_get_context(wsi),
					      lws_get_protocol(wsi));
}

static int answer(struct lws *wsi, unsigned long long n)
{
	unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
					  *end = buf + sizeof(buf) - 1;
	char body[64];
	int bl = snprintf(body, sizeof(body), "{\"seq\":%llu}", n);

	if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "application/json",
					(lws_filepos_t)bl, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return 1;
	memcpy(start, body, (size_t)bl);
	if (lws_write(wsi, start, (size_t)bl, LWS_WRITE_HTTP_FINAL) != bl)
		return 1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
		    void *user, void *in, size_t len)
{
	struct session *s = user;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED: s->sent = seq; return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (s->sent == seq || !event_len)
			return 0;
		s->sent = seq;
		return lws_write(wsi, event + LWS_PRE, event_len,
				 LWS_WRITE_TEXT) < (int)event_len ?
			       -1 :
			       0;
	case LWS_CALLBACK_HTTP:
		broadcast(wsi);
		s->http = seq;
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION: return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE: {
		unsigned long long n = s->http;

		s->http = 0;
		return n ? answer(wsi, n) : 0;
	}
	default: break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* clang-format off */
static const struct lws_protocols protocols[] = {
	{
		.name = "bench",
		.callback = callback,
		.per_session_data_size = sizeof(struct session),
		.rx_buffer_size = RX_BUFFER_SIZE,
		.tx_packet_size = TX_PACKET_SIZE,
	},
	{ .name = NULL },
};
/* clang-format on */

static void on_signal(int sig)
{
	(void)sig;
	if (evlib) /* its loop never returns to look at stopping */
		_exit(0);
	stopping = 1;
}

/* LWS_MINIMAL_EVLIB=ev or uv: lws's libev or libuv loop (its plugins,
 * libwebsockets-evlib-ev/-uv) instead of poll(), to measure them. */
static void evlib_option(struct lws_context_creation_info *info)
{
	const char *e = getenv("LWS_MINIMAL_EVLIB");

	if (!e || !*e)
		return;
	evlib = 1;
	if (strcmp(e, "ev") == 0)
		info->options |= LWS_SERVER_OPTION_LIBEV;
	else if (strcmp(e, "uv") == 0)
		info->options |= LWS_SERVER_OPTION_LIBUV;
	else
		evlib = 0;
}

int main(int argc, char **argv)
{
	struct lws_context_creation_info info;
	struct lws_context *ctx;
	char host[64] = "127.0.0.1";
	int port = 0;

	if (argc == 3 && strcmp(argv[1], "-a") == 0) {
		if (sscanf(argv[2], "%63[^:]:%d", host, &port) != 2) {
			fprintf(stderr, "usage: lws_minimal [-a HOST:PORT]\n");
			return 2;
		}
	} else if (argc != 1) {
		fprintf(stderr, "usage: lws_minimal [-a HOST:PORT]\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 |
		       LWS_SERVER_OPTION_DISABLE_IPV6;
	info.iface = host;
	info.port = port;
	info.protocols = protocols;
	info.count_threads = 1;
	info.timeout_secs = TIMEOUT_SECS;
	info.pt_serv_buf_size = SERV_BUF_SIZE;
	info.retry_and_idle_policy = &no_idle_check;
	evlib_option(&info);
	ctx = lws_create_context(&info);
	if (!ctx) {
		fprintf(stderr, "lws_minimal: cannot listen on %s:%d\n", host,
			port);
		return 1;
	}
	port = lws_get_vhost_listen_port(lws_get_vhost_by_name(ctx, "default"));
	printf("ready agents=%s:%d http=%s:%d\n", host, port, host, port);
	fflush(stdout);
	while (!stopping && lws_service(ctx, 0) >= 0)
		;
	lws_context_destroy(ctx);
	return 0;
}
