/*
 * admit: who may hold a client connection. Every worker's accepted
 * connections count against one total (limits.connections) and against
 * their address (limits.connections_per_ip; an IPv6 address counts by its
 * /64, which one host gets as easily as one address). The table is shared
 * by the workers and taken once per accept and once per close, never per
 * request.
 */
#ifndef GATE_ADMIT_H
#define GATE_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum admit_result {
	ADMIT_OK = 0,
	ADMIT_FULL,   /* limits.connections are all taken */
	ADMIT_PER_IP, /* this address holds its limits.connections_per_ip */
};

struct admit;

/* max: connections in all; per_ip: of them from one address, 0 = no cap.
 * NULL on ENOMEM. */
struct admit *admit_new(size_t max, size_t per_ip);
void admit_free(struct admit *a);

/* Count a new connection from sa, or say why not. */
enum admit_result admit_take(struct admit *a, const struct sockaddr *sa);
/* A connection admitted from sa is closed. */
void admit_put(struct admit *a, const struct sockaddr *sa);
/* Connections held now. */
size_t admit_count(struct admit *a);

/* A connection was refused (why: ADMIT_FULL or ADMIT_PER_IP). Refusals
 * are logged as counts, not one line each: true when a line is due (at
 * most one per ADMIT_LOG_MS), with the counts since the last one. */
#define ADMIT_LOG_MS 10000
bool admit_refused(struct admit *a, enum admit_result why, long long now_ms,
		   unsigned long long *full, unsigned long long *per_ip);

#endif
