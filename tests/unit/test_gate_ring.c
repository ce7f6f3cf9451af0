/*
 * test_gate_ring: the gate's byte containers (agent/gate/ring.c).
 *
 * A ring is checked against the plainest model of a FIFO (an array and two
 * counters) over a long scripted run of puts, takes, peeks and drops that
 * wraps around many times, plus the edges one by one: empty, full, a put
 * that only partly fits, a take asking for more than there is. A buf grows
 * by doubling up to its cap and refuses, whole, what would pass it.
 * ring_send writes to a real socketpair: a wrapped body in each framing,
 * and a body larger than the socket takes, sent over many partial writes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../agent/gate/ring.h"

static struct ring ring_of(size_t cap)
{
	struct ring r = { calloc(cap, 1), cap, 0, 0 };

	assert_non_null(r.buf);
	return r;
}

static void test_empty(void **state)
{
	struct ring r = ring_of(8);
	char out[8];
	size_t n = 99;

	(void)state;
	assert_int_equal(ring_room(&r), 8);
	assert_int_equal(ring_take(&r, out, sizeof(out)), 0);
	ring_peek(&r, &n);
	assert_int_equal(n, 0);
	assert_int_equal(ring_put(&r, "", 0), 0);
	assert_int_equal(r.len, 0);
	free(r.buf);
}

static void test_full_and_partial(void **state)
{
	struct ring r = ring_of(8);
	char out[16] = "";

	(void)state;
	/* A put takes what fits and says how much. */
	assert_int_equal(ring_put(&r, "abcde", 5), 5);
	assert_int_equal(ring_put(&r, "fghijk", 6), 3);
	assert_int_equal(ring_room(&r), 0);
	assert_int_equal(ring_put(&r, "x", 1), 0);
	/* A take gives what is asked, or what there is. */
	assert_int_equal(ring_take(&r, out, 3), 3);
	assert_memory_equal(out, "abc", 3);
	assert_int_equal(ring_room(&r), 3);
	assert_int_equal(ring_take(&r, out, sizeof(out)), 5);
	assert_memory_equal(out, "defgh", 5);
	assert_int_equal(r.len, 0);
	free(r.buf);
}

static void test_wrap_around(void **state)
{
	struct ring r = ring_of(8);
	const char *p;
	char out[8];
	size_t n;

	(void)state;
	ring_put(&r, "012345", 6);
	ring_take(&r, out, 4);                         /* head 4, "45" left */
	assert_int_equal(ring_put(&r, "6789a", 5), 5); /* wraps: 4 at the end */
	assert_int_equal(r.len, 7);
	/* peek shows the contiguous part up to the end of the buffer... */
	p = ring_peek(&r, &n);
	assert_int_equal(n, 4);
	assert_memory_equal(p, "4567", 4);
	ring_drop(&r, n);
	/* ...then the wrapped part at the start. */
	p = ring_peek(&r, &n);
	assert_int_equal(n, 3);
	assert_memory_equal(p, "89a", 3);
	assert_ptr_equal(p, r.buf);
	/* Emptied, the ring starts over at 0 so the next put is contiguous. */
	ring_drop(&r, 3);
	assert_int_equal(r.head, 0);
	ring_put(&r, "bcdefgh", 7);
	p = ring_peek(&r, &n);
	assert_int_equal(n, 7);
	assert_memory_equal(p, "bcdefgh", 7);
	free(r.buf);
}

/* A deterministic generator, so a failure replays. */
static unsigned next(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 16) & 0x7fff;
}

/* Many rounds against a model FIFO; every byte comes out once, in order. */
static void run_model(size_t cap, unsigned seed)
{
	enum { TOTAL = 200000 };
	struct ring r = ring_of(cap);
	unsigned char *model = malloc(TOTAL);
	size_t written = 0, read = 0;

	assert_non_null(model);
	for (size_t i = 0; i < TOTAL; i++)
		model[i] = (unsigned char)next(&seed);
	while (read < TOTAL) {
		unsigned op = next(&seed) % 3;
		size_t want = next(&seed) % (2 * cap + 1), n, got;
		char out[512];
		const char *p;

		if (op == 0 && written < TOTAL) {
			if (want > TOTAL - written)
				want = TOTAL - written;
			n = ring_put(&r, (const char *)model + written, want);
			assert_int_equal(n, want < cap - (written - read) ?
						    want :
						    cap - (written - read));
			written += n;
		} else if (op == 1) {
			if (want > sizeof(out))
				want = sizeof(out);
			got = ring_take(&r, out, want);
			assert_int_equal(got, want < written - read ?
						      want :
						      written - read);
			assert_memory_equal(out, model + read, got);
			read += got;
		} else {
			p = ring_peek(&r, &n);
			assert_true(n <= written - read);
			assert_true(n || written == read);
			if (n > want)
				n = want;
			assert_memory_equal(p, model + read, n);
			ring_drop(&r, n);
			read += n;
		}
		assert_int_equal(r.len, written - read);
		assert_true(r.head < cap);
	}
	free(model);
	free(r.buf);
}

static void test_against_a_model(void **state)
{
	(void)state;
	run_model(1, 1);
	run_model(7, 2);
	run_model(64, 3);
	run_model(4096, 4);
}

/* ---- buf ------------------------------------------------------------- */

static void test_buf_grows_to_its_cap(void **state)
{
	struct buf b = { .max = 5000 };
	char block[1000];

	(void)state;
	memset(block, 'x', sizeof(block));
	assert_int_equal(buf_str(&b, "head"), 0);
	assert_int_equal(b.cap, 1024); /* the first allocation */
	assert_int_equal(buf_add(&b, block, 1000), 0);
	assert_int_equal(b.cap, 1024); /* 1004 bytes fit */
	assert_int_equal(buf_add(&b, block, 1000), 0);
	assert_int_equal(b.cap, 2048); /* doubled */
	assert_int_equal(buf_add(&b, block, 1000), 0);
	assert_int_equal(b.cap, 4096);
	assert_int_equal(buf_add(&b, block, 1000), 0);
	assert_int_equal(buf_add(&b, block, 996), 0);
	assert_int_equal(b.len, 5000); /* exactly the cap */
	assert_int_equal(b.cap, 5000); /* never more */
	/* Past the cap: refused, and nothing of it appended. */
	assert_int_equal(buf_add(&b, "y", 1), -1);
	assert_int_equal(b.len, 5000);
	assert_int_equal(buf_add(&b, "", 0), 0);
	assert_memory_equal(b.p, "headxxx", 7);
	buf_release(&b);
	assert_null(b.p);
	assert_int_equal(b.len + b.cap + b.off, 0);
	assert_int_equal(b.max, 5000); /* the cap outlives it */
}

static void test_buf_default_cap(void **state)
{
	struct buf b = { 0 };
	char *big = calloc(1, BUF_MAX + 1);

	(void)state;
	assert_non_null(big);
	assert_int_equal(buf_add(&b, big, BUF_MAX + 1), -1);
	assert_int_equal(b.len, 0);
	assert_int_equal(buf_add(&b, big, BUF_MAX), 0);
	assert_int_equal(b.cap, BUF_MAX);
	assert_int_equal(buf_add(&b, "y", 1), -1);
	buf_release(&b);
	free(big);
}

static void test_buf_shift(void **state)
{
	struct buf b = { 0 };

	(void)state;
	buf_str(&b, "GET / HTTP/1.1\r\n");
	b.off = 6; /* "GET / " was sent */
	buf_shift(&b, 4);
	assert_int_equal(b.len, 12);
	assert_memory_equal(b.p, "/ HTTP/1.1\r\n", 12);
	assert_int_equal(b.off, 2);
	buf_shift(&b, 5); /* past off: off is 0 */
	assert_int_equal(b.off, 0);
	buf_shift(&b, 100); /* past the end: empty */
	assert_int_equal(b.len, 0);
	buf_release(&b);
}

/* ---- ring_send --------------------------------------------------------- */

static void socket_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

/* All that is waiting on fd (never blocks), appended to b. */
static void drain(int fd, struct buf *b)
{
	char tmp[65536];
	ssize_t n;

	while ((n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT)) > 0)
		assert_int_equal(buf_add(b, tmp, (size_t)n), 0);
	assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* "45" then "6789a" wrapped: head 4, 7 bytes, 3 of them at the start. */
static struct ring wrapped(void)
{
	struct ring r = ring_of(8);
	char out[4];

	ring_put(&r, "012345", 6);
	ring_take(&r, out, 4);
	ring_put(&r, "6789a", 5);
	return r;
}

static void send_all(struct ring *r, struct framing *f, bool eof,
		     const char *want)
{
	struct buf out = { 0 }, got = { .max = 1 << 20 };
	bool blocked;
	size_t moved;
	int sv[2];

	socket_pair(sv);
	assert_int_equal(ring_send(sv[0], &out, r, f, eof, &blocked, &moved),
			 0);
	assert_false(blocked);
	drain(sv[1], &got);
	assert_int_equal(got.len, strlen(want));
	assert_memory_equal(got.p, want, got.len);
	assert_true(framing_done(f, &out, r, eof));
	close(sv[0]);
	close(sv[1]);
	buf_release(&out);
	buf_release(&got);
}

static void test_send_framings(void **state)
{
	struct ring r = wrapped();
	struct framing raw = { .mode = FRAME_RAW };
	struct framing length = { .mode = FRAME_LENGTH, .left = 5 };
	struct framing chunked = { .mode = FRAME_CHUNKED };

	(void)state;
	send_all(&r, &raw, true, "456789a");
	free(r.buf);
	/* A length takes no byte past it: the rest stays in the ring. */
	r = wrapped();
	send_all(&r, &length, false, "45678");
	assert_int_equal(r.len, 2);
	free(r.buf);
	r = wrapped();
	send_all(&r, &chunked, true, "7\r\n456789a\r\n0\r\n\r\n");
	free(r.buf);
}

/* A body bigger than the socket takes goes over many partial writes, and
 * every byte arrives once, in order. */
static void test_send_partial_writes(void **state)
{
	enum { BODY = 1 << 20 };
	struct ring r = ring_of(BODY);
	struct framing f = { .mode = FRAME_RAW };
	struct buf out = { 0 }, got = { .max = BODY };
	char *body = malloc(BODY);
	int sv[2], size = 4096, rounds = 0;
	bool blocked;
	size_t moved, total = 0;

	(void)state;
	assert_non_null(body);
	for (size_t i = 0; i < BODY; i++)
		body[i] = (char)(i * 7 + i / 251);
	assert_int_equal(ring_put(&r, body, BODY), BODY);
	socket_pair(sv);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	while (r.len) {
		assert_int_equal(ring_send(sv[0], &out, &r, &f, true, &blocked,
					   &moved),
				 0);
		total += moved;
		assert_int_equal(total + r.len, BODY);
		if (r.len)
			assert_true(blocked);
		drain(sv[1], &got);
		rounds++;
	}
	assert_true(rounds > 1);
	assert_int_equal(got.len, BODY);
	assert_memory_equal(got.p, body, BODY);
	assert_true(framing_done(&f, &out, &r, true));
	close(sv[0]);
	close(sv[1]);
	buf_release(&out);
	buf_release(&got);
	free(body);
	free(r.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_full_and_partial),
		cmocka_unit_test(test_wrap_around),
		cmocka_unit_test(test_against_a_model),
		cmocka_unit_test(test_buf_grows_to_its_cap),
		cmocka_unit_test(test_buf_default_cap),
		cmocka_unit_test(test_buf_shift),
		cmocka_unit_test(test_send_framings),
		cmocka_unit_test(test_send_partial_writes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL) != 0;
}
