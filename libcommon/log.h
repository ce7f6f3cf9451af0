/*
 * log: one line per event on stderr, key=value style, journald-friendly.
 *
 *   ts=2026-11-23T12:00:00.123Z level=info prog=discoveryd msg=listening
 * addr=...
 *
 * Only programs (discoveryd, discoveryctl, the sidecar, the gate) log through
 * this module. Libraries never print: libagent hands its lines to the host
 * through a callback instead.
 *
 * The message is a short word or phrase naming the event; details follow as
 * key=value pairs written by the caller. Values that may hold spaces, quotes
 * or control characters (anything from the network) go through log_quote().
 */
#ifndef DISCOVERY_LOG_H
#define DISCOVERY_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/* Set the program name shown in every line and the initial level. */
void log_init(const char *prog, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error", "warn", "info" or "debug"; -1 if unknown. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

/*
 * Write one line: msg, then the key=value pairs that fmt produces (may be
 * NULL). Thread-safe: the line is written with one write(2).
 */
void log_msg(enum log_level level, const char *msg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(msg, ...) log_msg(LOG_ERROR, msg, __VA_ARGS__)
#define log_warn(msg, ...)  log_msg(LOG_WARN, msg, __VA_ARGS__)
#define log_info(msg, ...)  log_msg(LOG_INFO, msg, __VA_ARGS__)
#define log_debug(msg, ...) log_msg(LOG_DEBUG, msg, __VA_ARGS__)

/*
 * A line from another library's logger (libmicrohttpd, libwebsockets):
 * trailing newlines dropped, logged as text="...". log_vtext formats it
 * first, for loggers that hand over printf-style arguments.
 */
void log_text(enum log_level level, const char *msg, const char *text);
void log_vtext(enum log_level level, const char *msg, const char *fmt,
	       va_list ap) __attribute__((format(printf, 3, 0)));

/*
 * A line from libagent's on_log callback ("message key=value ..."): logged
 * with its first word as msg and the rest as the key=value tail. The levels
 * of libagent and this module share their numbering.
 */
void log_agent_line(int level, const char *line);

/*
 * Quote s for use as a value: returned as is when it is a plain token,
 * otherwise wrapped in double quotes with ", \ and control characters
 * escaped, truncated to fit. Returns buf.
 */
const char *log_quote(char *buf, size_t size, const char *s);
/* A buffer for one quoted value (a URI, a reason, a file name): longer
 * values are cut with an ellipsis. */
#define LOG_QUOTE_MAX 300

/*
 * Values longer than a line (a hook's output): any bytes, NUL included,
 * logged whole over several lines rather than cut.
 *
 * log_quote_bytes quotes the longest prefix of data (len bytes) that fits
 * in size bytes, the quotes and the NUL included, never cutting a
 * character or an escape; *used gets the input bytes it covers. Unlike
 * log_quote it always quotes, and a byte that is not UTF-8 (or NUL)
 * becomes \xNN, so the unquoted value is data byte for byte.
 *
 * log_parts writes data as log_parts_count(data, len) lines (none when len
 * is 0), each at most LOG_PART_BYTES of quoted value:
 *   msg=MSG FIELDS part=I/N KEY="..."
 * with I from 1 to N; fields are key=value pairs repeated in every part
 * ("" for none) so that a reader can match the parts to their event. A
 * part leaves a line about 1 KiB for its head and fields, so with short
 * fields no part is ever cut.
 */
#define LOG_PART_BYTES 1024
const char *log_quote_bytes(char *buf, size_t size, const void *data,
			    size_t len, size_t *used);
size_t log_parts_count(const void *data, size_t len);
void log_parts(enum log_level level, const char *msg, const char *fields,
	       const char *key, const void *data, size_t len);

#endif
