/*
 * ws_daemon: see ws_daemon.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../../agent/lib/agent_int.h"
#include "ws_daemon.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int listen_any(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A port nobody listens on (bound, then closed). */
int closed_port(void)
{
	int port, fd = listen_any(&port);

	close(fd);
	return port;
}

int accept_within(int lfd, int ms)
{
	struct pollfd p = { lfd, POLLIN, 0 };

	if (poll(&p, 1, ms) != 1)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static int read_exact(int fd, void *buf, size_t n, int64_t deadline)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { fd, POLLIN, 0 };
		int64_t left = deadline - now_ms();
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			return -1;
		r = read(fd, (char *)buf + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static int try_write(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void write_all(int fd, const void *buf, size_t n)
{
	if (try_write(fd, buf, n))
		fail_msg("write: %s", strerror(errno));
}

/* A pong; the agent may already have dropped the connection (it does
 * right after its close frame), which is no failure. */
static void send_pong(int fd, const char *payload, size_t n)
{
	unsigned char frame[2 + 125];

	frame[0] = 0x8a;
	frame[1] = (unsigned char)n;
	memcpy(frame + 2, payload, n);
	(void)try_write(fd, frame, n + 2);
}

/* Read the upgrade request into req and answer 101. */
static void handshake(int fd, char *req, size_t cap)
{
	int64_t deadline = now_ms() + WAIT_MS;
	char accept_src[128], accept_b64[64], reply[512];
	unsigned char sha[20];
	size_t len = 0;
	const char *key;
	int n;

	while (!strstr(req, "\r\n\r\n")) {
		assert_true(len + 1 < cap);
		assert_int_equal(read_exact(fd, req + len, 1, deadline), 0);
		req[++len] = '\0';
	}
	key = strcasestr(req, "Sec-WebSocket-Key:");
	assert_non_null(key);
	key += strlen("Sec-WebSocket-Key:");
	while (*key == ' ')
		key++;
	n = snprintf(accept_src, sizeof(accept_src), "%.*s" WS_GUID,
		     (int)strcspn(key, "\r\n"), key);
	lws_SHA1((const unsigned char *)accept_src, (size_t)n, sha);
	lws_b64_encode_string((const char *)sha, 20, accept_b64,
			      sizeof(accept_b64));
	n = snprintf(reply, sizeof(reply),
		     "HTTP/1.1 101 Switching Protocols\r\n"
		     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		     "Sec-WebSocket-Accept: %s\r\n"
		     "Sec-WebSocket-Protocol: discovery.v1\r\n\r\n",
		     accept_b64);
	write_all(fd, reply, (size_t)n);
}

void ws_send(int fd, int opcode, bool fin, const void *payload, size_t n)
{
	unsigned char head[10];
	size_t h = 0;

	head[h++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
	if (n < 126) {
		head[h++] = (unsigned char)n;
	} else if (n < 65536) {
		head[h++] = 126;
		head[h++] = (unsigned char)(n >> 8);
		head[h++] = (unsigned char)n;
	} else {
		head[h++] = 127;
		for (int i = 7; i >= 0; i--)
			head[h++] = (unsigned char)((uint64_t)n >> (8 * i));
	}
	write_all(fd, head, h);
	if (n)
		write_all(fd, payload, n);
}

void ws_text(int fd, const char *json)
{
	ws_send(fd, 1, true, json, strlen(json));
}

/* One (masked) frame from the agent; -1 on timeout or EOF. */
static int ws_frame(int fd, int64_t deadline, char *buf, size_t cap,
		    size_t *len)
{
	unsigned char h[2], ext[8], mask[4];
	uint64_t n;

	if (read_exact(fd, h, 2, deadline))
		return -1;
	assert_true(h[1] & 0x80); /* a client masks every frame */
	n = h[1] & 0x7f;
	if (n == 126 || n == 127) {
		size_t k = n == 126 ? 2 : 8;

		if (read_exact(fd, ext, k, deadline))
			return -1;
		n = 0;
		for (size_t i = 0; i < k; i++)
			n = n << 8 | ext[i];
	}
	assert_true(n < cap);
	if (read_exact(fd, mask, 4, deadline) ||
	    (n && read_exact(fd, buf, (size_t)n, deadline)))
		return -1;
	for (uint64_t i = 0; i < n; i++)
		buf[i] ^= (char)mask[i % 4];
	buf[n] = '\0';
	*len = (size_t)n;
	return h[0] & 0x0f;
}

/*
 * The agent's next text or close frame, answering its pings on the way
 * (unless silent); -1 when none comes in time.
 */
int ws_next(int fd, int ms, bool silent, char *buf, size_t cap, size_t *len)
{
	int64_t deadline = now_ms() + ms;

	for (;;) {
		int op = ws_frame(fd, deadline, buf, cap, len);

		if (op == 9 && !silent)
			send_pong(fd, buf, *len < 125 ? *len : 125);
		if (op != 9 && op != 10)
			return op;
	}
}

/* The agent's next text frame, which must come. */
cJSON *expect_text(int fd, const char *type)
{
	char buf[8192];
	size_t len;
	cJSON *msg, *t;

	assert_int_equal(ws_next(fd, WAIT_MS, false, buf, sizeof(buf), &len),
			 1);
	msg = cJSON_ParseWithLength(buf, len);
	assert_non_null(msg);
	t = cJSON_GetObjectItemCaseSensitive(msg, "type");
	assert_true(cJSON_IsString(t));
	assert_string_equal(t->valuestring, type);
	return msg;
}

/* The agent's close frame (text frames before it skipped): its code, the
 * reason in `reason`. */
int expect_close(int fd, int ms, char *reason, size_t cap)
{
	char buf[8192];
	size_t len;
	int op;

	while ((op = ws_next(fd, ms, false, buf, sizeof(buf), &len)) == 1)
		;
	assert_int_equal(op, 8);
	assert_true(len >= 2);
	snprintf(reason, cap, "%.*s", (int)(len - 2), buf + 2);
	return ((unsigned char)buf[0] << 8) | (unsigned char)buf[1];
}

void send_close(int fd, int code, const char *reason)
{
	char buf[128];
	size_t n = strlen(reason);

	buf[0] = (char)(code >> 8);
	buf[1] = (char)code;
	memcpy(buf + 2, reason, n);
	ws_send(fd, 8, true, buf, n + 2);
}

/* hello's resume.seq, or -1 without resume. */
long long hello_resume_seq(cJSON *hello)
{
	cJSON *resume = cJSON_GetObjectItemCaseSensitive(hello, "resume");

	if (!resume)
		return -1;
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(resume, "epoch")
				    ->valuestring,
			    EPOCH);
	return (long long)cJSON_GetObjectItemCaseSensitive(resume, "seq")
		->valuedouble;
}

void send_welcome(int fd, uint64_t seq, bool recovered, uint64_t replay,
		  const char *services)
{
	char frame[512];

	snprintf(frame, sizeof(frame),
		 "{\"type\":\"welcome\",\"node\":\"test\",\"epoch\":\"" EPOCH
		 "\","
		 "\"seq\":%llu,\"recovered\":%s,\"replay\":%llu,\"services\":%"
		 "s}",
		 (unsigned long long)seq, recovered ? "true" : "false",
		 (unsigned long long)replay, services);
	ws_text(fd, frame);
}

void send_event(int fd, uint64_t seq)
{
	char frame[256];

	snprintf(frame, sizeof(frame),
		 "{\"type\":\"event\",\"epoch\":\"" EPOCH "\",\"seq\":%llu,"
		 "\"kind\":\"command\",\"command\":\"Test\",\"value\":%llu}",
		 (unsigned long long)seq, (unsigned long long)seq);
	ws_text(fd, frame);
}

/* Accept the agent's next connection, answer the handshake, read hello. */
int link_up(int lfd, char *req, size_t cap, cJSON **hello)
{
	int fd = accept_within(lfd, WAIT_MS);

	assert_true(fd >= 0);
	req[0] = '\0';
	handshake(fd, req, cap);
	*hello = expect_text(fd, "hello");
	return fd;
}
