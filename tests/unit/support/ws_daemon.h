/*
 * ws_daemon: the socket side of a scripted discoveryd, for libagent's link
 * tests (test_agent_link.c). The test thread plays the daemon over a real
 * socket: listen, accept, answer the WebSocket handshake, read the agent's
 * (masked) frames and write exactly the frames each case needs. Failures
 * are cmocka assertions, so these run inside a cmocka test only.
 */
#ifndef TESTS_UNIT_WS_DAEMON_H
#define TESTS_UNIT_WS_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#define EPOCH   "e0000000000000000000000000000001"
#define WAIT_MS 5000 /* generous: only a broken agent takes this long */

int64_t now_ms(void);
int listen_any(int *port);
/* A port nobody listens on (bound, then closed). */
int closed_port(void);
int accept_within(int lfd, int ms);
void ws_send(int fd, int opcode, bool fin, const void *payload, size_t n);
void ws_text(int fd, const char *json);
/*
 * The agent's next text or close frame, answering its pings on the way
 * (unless silent); -1 when none comes in time.
 */
int ws_next(int fd, int ms, bool silent, char *buf, size_t cap, size_t *len);
/* The agent's next text frame, which must come. */
cJSON *expect_text(int fd, const char *type);
/* The agent's close frame (text frames before it skipped): its code, the
 * reason in `reason`. */
int expect_close(int fd, int ms, char *reason, size_t cap);
void send_close(int fd, int code, const char *reason);
/* hello's resume.seq, or -1 without resume. */
long long hello_resume_seq(cJSON *hello);
void send_welcome(int fd, uint64_t seq, bool recovered, uint64_t replay,
		  const char *services);
void send_event(int fd, uint64_t seq);
/* Accept the agent's next connection, answer the handshake, read hello. */
int link_up(int lfd, char *req, size_t cap, cJSON **hello);

#endif
