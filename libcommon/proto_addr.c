/*
 * proto_addr: an instance's endpoint as the hello names it (docs/protocol.md,
 * "hello"): host:port, where host is an IPv4 literal, an IPv6 literal in
 * brackets, or a DNS name (RFC 1123 labels). Literals are checked by
 * inet_pton, so "1.2.3" or "[::1%eth0]" are refused rather than read in
 * some libc's lenient way.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

static const char *const state_names[] = {
	[PROTO_STATE_NOTREADY] = "notready",
	[PROTO_STATE_READY] = "ready",
	[PROTO_STATE_DRAINING] = "draining",
};

const char *proto_state_name(enum proto_state s)
{
	return (unsigned)s <= PROTO_STATE_DRAINING ? state_names[s] :
						     "notready";
}

int proto_state_parse(const char *name)
{
	for (int i = 0; i <= PROTO_STATE_DRAINING; i++)
		if (strcmp(name, state_names[i]) == 0)
			return i;
	return -1;
}

/* One DNS label: 1-63 of [A-Za-z0-9-], not beginning or ending with '-'. */
static bool valid_label(const char *s, size_t n)
{
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

static bool numeric_label(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n > 0;
}

static bool valid_dns_name(const char *s, size_t n)
{
	size_t start = 0, last = 0;
	bool digits_only = true;

	if (n == 0 || n > PROTO_HOST_MAX)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.') {
			if (s[i] < '0' || s[i] > '9')
				digits_only = false;
			continue;
		}
		if (!valid_label(s + start, i - start))
			return false;
		last = start;
		start = i + 1;
	}
	/* All digits and dots is an IPv4 literal gone wrong ("1.2.3"),
	 * not a name; nor is an all-numeric last label (RFC 3696). */
	return !digits_only && !numeric_label(s + last, n - last);
}

/* "1".."65535", no sign, no leading zero. */
static bool parse_port(const char *s, unsigned *port)
{
	unsigned v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 5 || s[0] == '0')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = v;
	return true;
}

int proto_split_address(const char *addr, char *host, size_t hostlen,
			unsigned *port)
{
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t n;
	char buf[PROTO_HOST_MAX + 1];
	unsigned char bin[16];

	if (!colon || !parse_port(colon + 1, port))
		return -1;
	n = (size_t)(colon - addr);
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
		h = addr + 1;
		n -= 2;
		if (n == 0 || n >= sizeof(buf))
			return -1;
		memcpy(buf, h, n);
		buf[n] = '\0';
		if (inet_pton(AF_INET6, buf, bin) != 1)
			return -1;
	} else {
		if (n == 0 || n >= sizeof(buf) || memchr(h, ':', n))
			return -1;
		memcpy(buf, h, n);
		buf[n] = '\0';
		/* inet_aton takes what getaddrinfo would read as an IPv4
		 * address in other spellings (0x7f.1, 2130706433): those
		 * are neither a literal nor a name. */
		if (inet_pton(AF_INET, buf, bin) != 1 &&
		    (inet_aton(buf, (struct in_addr *)bin) ||
		     !valid_dns_name(h, n)))
			return -1;
	}
	if (n >= hostlen)
		return -1;
	memcpy(host, buf, n + 1);
	return 0;
}

bool proto_valid_address(const char *addr)
{
	char host[PROTO_HOST_MAX + 1];
	unsigned port;

	return proto_split_address(addr, host, sizeof(host), &port) == 0;
}
