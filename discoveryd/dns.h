/*
 * dns: the DNS server (docs/dns.md). With listen.dns set it answers A, AAAA
 * and SRV questions about services' ready endpoints over UDP and TCP on one
 * port, from the sets the hub publishes on its board (epboard.h).
 *
 * It runs on two threads of its own (UDP, TCP) and never calls into the
 * hub: a query reads the board only, so a flood of queries never delays the
 * fan-out and a query never waits for the hub. Packets are parsed and
 * written by libldns.
 */
#ifndef DISCOVERYD_DNS_H
#define DISCOVERYD_DNS_H

#include <stddef.h>

#include "dconf.h"
#include "epboard.h"
#include "metrics.h"

struct dns;

/* Bind conf->listen_dns (UDP and TCP) and start both threads, reading
 * board (not owned; it must outlive dns_stop). NULL with a message in err. */
struct dns *dns_start(const struct dconf *conf, struct epboard *board,
		      char *err, size_t errlen);
/* The bound address, port 0 resolved. */
const char *dns_listen_address(const struct dns *d);
/* The DNS counters in /metrics. Any thread. */
void dns_metrics(struct dns *d, struct metrics_text *t);
/* Stop both threads, close every socket, free. NULL is fine. */
void dns_stop(struct dns *d);

#endif
