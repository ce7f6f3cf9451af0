/*
 * log: key=value lines on stderr, for programs only; the contract is in
 * log.h.
 *
 * A line is built whole in a stack buffer and written with one write(2).
 * Lines are capped below PIPE_BUF, so a line reaching a pipe (journald's
 * stream, a test harness) is never interleaved with another thread's, and
 * no lock or stdio buffer is involved. The level is an atomic so that a
 * reload on one thread can change it while others log.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_BYTES 2048 /* newline included; below PIPE_BUF (4096) */
#define LOG_MSG_BYTES  256  /* the quoted msg */
#define LOG_PROG_BYTES 64

static atomic_int current_level = LOG_INFO;
/* Written by log_init, before the program starts threads. */
static char prog_name[LOG_PROG_BYTES];

static const char *const level_names[] = { "error", "warn", "info", "debug" };

static enum log_level clamp_level(int level)
{
	if (level < LOG_ERROR)
		return LOG_ERROR;
	return level > LOG_DEBUG ? LOG_DEBUG : (enum log_level)level;
}

void log_init(const char *prog, enum log_level level)
{
	if (prog)
		snprintf(prog_name, sizeof(prog_name), "%s", prog);
	log_set_level(level);
}

void log_set_level(enum log_level level)
{
	atomic_store_explicit(&current_level, clamp_level((int)level),
			      memory_order_relaxed);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load_explicit(&current_level,
						    memory_order_relaxed);
}

int log_level_parse(const char *name)
{
	for (int i = LOG_ERROR; name && i <= LOG_DEBUG; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

const char *log_level_name(enum log_level level)
{
	if ((int)level < LOG_ERROR || (int)level > LOG_DEBUG)
		return "unknown";
	return level_names[level];
}

/* ---- quoting ------------------------------------------------------------ */

/* A value that needs no quotes: printable ASCII without space, quote,
 * backslash or '=' (which would make key=value ambiguous). */
static bool is_plain(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7E || *s == '"' || *s == '\\' ||
		    *s == '=')
			return false;
	return true;
}

/* The length of the well-formed UTF-8 sequence at s, or 0; left is how
 * many bytes s has (a NUL-terminated string may pass SIZE_MAX: NUL is no
 * continuation byte, so the scan stops there). */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	unsigned char lo = 0x80, hi = 0xBF;
	size_t n;

	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		n = 2;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		n = 3;
		lo = s[0] == 0xE0 ? 0xA0 : 0x80;
		hi = s[0] == 0xED ? 0x9F : 0xBF;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		n = 4;
		lo = s[0] == 0xF0 ? 0x90 : 0x80;
		hi = s[0] == 0xF4 ? 0x8F : 0xBF;
	} else {
		return 0;
	}
	if (n > left || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t k = 2; k < n; k++)
		if ((s[k] & 0xC0) != 0x80)
			return 0;
	return n;
}

/* The quoted form of the character at s (left bytes remain) into out;
 * *used gets the input bytes it covers. Valid UTF-8 passes through (names
 * in other scripts stay readable); a stray byte, NUL included, becomes \xNN
 * so the line stays valid UTF-8 for journald. */
static size_t escape_one(const unsigned char *s, size_t left, char out[4],
			 size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	size_t n;

	*used = 1;
	switch (s[0]) {
	case '"': memcpy(out, "\\\"", 2); return 2;
	case '\\': memcpy(out, "\\\\", 2); return 2;
	case '\n': memcpy(out, "\\n", 2); return 2;
	case '\r': memcpy(out, "\\r", 2); return 2;
	case '\t': memcpy(out, "\\t", 2); return 2;
	default: break;
	}
	if (s[0] >= 0x20 && s[0] < 0x7F) {
		out[0] = (char)s[0];
		return 1;
	}
	if (s[0] >= 0x80 && (n = utf8_len(s, left)) > 0) {
		memcpy(out, s, n);
		*used = n;
		return n;
	}
	out[0] = '\\';
	out[1] = 'x';
	out[2] = hex[s[0] >> 4];
	out[3] = hex[s[0] & 0xF];
	return 4;
}

const char *log_quote(char *buf, size_t size, const char *s)
{
	const unsigned char *p;
	size_t need = 2, budget, n = 1, used, k;
	char piece[4];

	if (size == 0) /* nowhere to write even the terminator */
		return "";
	if (!s)
		s = "(null)";
	if (is_plain(s) && strlen(s) < size) {
		memcpy(buf, s, strlen(s) + 1);
		return buf;
	}
	/* Measure first, so that a cut leaves room for the ellipsis. */
	for (p = (const unsigned char *)s; *p; p += used)
		need += escape_one(p, SIZE_MAX, piece, &used);
	if (need >= size && size < sizeof("\"...\"")) {
		/* Too small for even the ellipsis: as much of it as fits. */
		memcpy(buf, "\"...\"", size - 1);
		buf[size - 1] = '\0';
		return buf;
	}
	/* Content budget: all of it, or what leaves room for ...", NUL. */
	budget = need < size ? need - 2 : size - sizeof("\"...\"");
	buf[0] = '"';
	for (p = (const unsigned char *)s; *p; p += used) {
		k = escape_one(p, SIZE_MAX, piece, &used);
		if (n - 1 + k > budget)
			break;
		memcpy(buf + n, piece, k);
		n += k;
	}
	if (need >= size) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

const char *log_quote_bytes(char *buf, size_t size, const void *data,
			    size_t len, size_t *used)
{
	const unsigned char *s = data;
	size_t n = 1, off = 0, k, took;
	char piece[4];

	*used = 0;
	if (size < sizeof("\"\"")) { /* no room for the quotes */
		if (size)
			buf[0] = '\0';
		return size ? buf : "";
	}
	buf[0] = '"';
	while (off < len) {
		k = escape_one(s + off, len - off, piece, &took);
		if (n + k + sizeof("\"") > size) /* the closing quote, NUL */
			break;
		memcpy(buf + n, piece, k);
		n += k;
		off += took;
	}
	buf[n++] = '"';
	buf[n] = '\0';
	*used = off;
	return buf;
}

size_t log_parts_count(const void *data, size_t len)
{
	char part[LOG_PART_BYTES];
	size_t parts = 0, off = 0, used;

	while (off < len) {
		log_quote_bytes(part, sizeof(part), (const char *)data + off,
				len - off, &used);
		off += used;
		parts++;
	}
	return parts; /* a part always holds a character: used > 0 */
}

void log_parts(enum log_level level, const char *msg, const char *fields,
	       const char *key, const void *data, size_t len)
{
	char part[LOG_PART_BYTES];
	size_t parts, off = 0, used;

	if (level > log_get_level())
		return;
	parts = log_parts_count(data, len);
	for (size_t i = 1; i <= parts; i++) {
		log_quote_bytes(part, sizeof(part), (const char *)data + off,
				len - off, &used);
		off += used;
		log_msg(level, msg, "%s%spart=%zu/%zu %s=%s", fields,
			*fields ? " " : "", i, parts, key, part);
	}
}

/* ---- lines -------------------------------------------------------------- */

/* How far an snprintf into room bytes (plus the NUL) moved; notes a cut. */
static size_t advance(int printed, size_t room, bool *cut)
{
	if (printed < 0)
		return 0;
	if ((size_t)printed > room)
		*cut = true;
	return (size_t)printed < room ? (size_t)printed : room;
}

static const char *prog(void)
{
	return prog_name[0] ? prog_name : program_invocation_short_name;
}

void log_msg(enum log_level level, const char *msg, const char *fmt, ...)
{
	char line[LOG_LINE_BYTES], quoted_msg[LOG_MSG_BYTES],
		quoted_prog[LOG_PROG_BYTES + 8];
	const size_t text_max = sizeof(line) - 1; /* room for '\n' */
	int saved_errno = errno;
	struct timespec now;
	struct tm tm;
	size_t n, tail;
	bool cut = false;
	va_list ap;

	if ((int)level >
	    atomic_load_explicit(&current_level, memory_order_relaxed))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	/* Each step may use up to text_max - n bytes plus the NUL, which the
	 * next step (or the newline) overwrites. */
	n += advance(snprintf(line + n, text_max + 1 - n,
			      ".%03ldZ level=%s prog=%s msg=%s",
			      (long)(now.tv_nsec / 1000000),
			      log_level_name(clamp_level((int)level)),
			      log_quote(quoted_prog, sizeof(quoted_prog),
					prog()),
			      log_quote(quoted_msg, sizeof(quoted_msg), msg)),
		     text_max - n, &cut);
	if (fmt && *fmt && !cut) {
		if (n < text_max) {
			line[n++] = ' ';
			va_start(ap, fmt);
			tail = advance(vsnprintf(line + n, text_max + 1 - n,
						 fmt, ap),
				       text_max - n, &cut);
			va_end(ap);
			n = tail > 0 ? n + tail : n - 1; /* no trailing space */
		} else {
			cut = true;
		}
	}
	if (cut)
		memcpy(line + n - 3, "...", 3);
	/* One call, one line, whatever a careless caller passed unquoted. */
	for (char *c = line; c < line + n; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	line[n++] = '\n';
	while (write(STDERR_FILENO, line, n) < 0 && errno == EINTR)
		continue;
	errno = saved_errno;
}

void log_text(enum log_level level, const char *msg, const char *text)
{
	char trimmed[512], quoted[600];
	size_t n = strlen(text);

	if (level > log_get_level())
		return;
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		n--;
	snprintf(trimmed, sizeof(trimmed), "%.*s", (int)n, text);
	log_msg(level, msg, "text=%s",
		log_quote(quoted, sizeof(quoted), trimmed));
}

void log_vtext(enum log_level level, const char *msg, const char *fmt,
	       va_list ap)
{
	char text[512];

	if (level > log_get_level())
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	log_text(level, msg, text);
}

void log_agent_line(int level, const char *line)
{
	const char *space = strchr(line, ' ');
	char msg[64];
	size_t n = space ? (size_t)(space - line) : strlen(line);

	if (n >= sizeof(msg))
		n = sizeof(msg) - 1;
	memcpy(msg, line, n);
	msg[n] = '\0';
	log_msg((enum log_level)level, msg, "%s", space ? space + 1 : "");
}
