/*
 * sse: live event streams for GET /api/discovery/events with
 * "Accept: text/event-stream" (Server-Sent Events), for the dashboard,
 * discoveryctl events --follow and consumers in other languages.
 *
 *   id: 58                        every logged event, as agents get it
 *   event: event
 *   data: {"type":"event","epoch":...,"seq":58,...}
 *
 *   event: change                 an agent linked, left or changed status
 *   data: {"service":"web"}       (no id: not in the log)
 *
 *   : keep-alive                  a comment every 15 s of silence
 *
 * A client that reconnects with Last-Event-ID (or ?after=) gets the
 * retained events after it first, then the live ones, in order.
 *
 * Two threads touch a stream: the hub appends text (sse_push), and
 * libmicrohttpd's thread reads it out (sse_read, the content reader). The
 * buffer is guarded by the stream's mutex; an idle connection is suspended
 * and the hub resumes it when text arrives. A reader that falls more than
 * SSE_BUFFER_MAX behind is cut off; it reconnects with Last-Event-ID.
 */
#ifndef DISCOVERYD_SSE_H
#define DISCOVERYD_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <microhttpd.h>

#define SSE_BUFFER_MAX (1u << 20)

struct sse;

struct sse *sse_new(struct MHD_Connection *c);
void sse_free(struct sse *s);

/* Hub thread: append text; resumes the connection if it waits. */
void sse_push(struct sse *s, const char *text, size_t len);
/* Hub thread: the time of the last push (monotonic ms), for keep-alives. */
int64_t sse_last_push_ms(const struct sse *s);

/* Hub thread: end the stream (the reader finishes what it has, then ends). */
void sse_end(struct sse *s);

/* The MHD content reader (cls = the stream). */
ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max);

/* Hub thread: the next stream in the hub's list. */
struct sse **sse_next(struct sse *s);

#endif
