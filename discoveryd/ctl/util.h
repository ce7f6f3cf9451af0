/*
 * util: the few helpers every part of discoveryctl needs: allocation that
 * cannot return NULL, the program's one way to report a fatal error, and
 * making server-supplied text safe to show on a terminal.
 *
 * A command-line client has nothing sensible to do when memory runs out but
 * say so and stop, the way git's xmalloc does; that keeps every caller free
 * of NULL checks that could only lead to the same message.
 */
#ifndef DISCOVERYCTL_UTIL_H
#define DISCOVERYCTL_UTIL_H

#include <stddef.h>

#define CTL_PROG "discoveryctl"
/* Room for one error sentence (curl's own messages fit in 256). */
#define CTL_ERR_SIZE 512

/* Exit codes: the contract scripts rely on (also in the usage text). */
enum ctl_exit {
	CTL_EXIT_OK = 0,
	CTL_EXIT_REFUSED = 1,     /* HTTP 4xx other than 404 */
	CTL_EXIT_USAGE = 2,       /* bad flags or arguments; nothing was sent */
	CTL_EXIT_UNAVAILABLE = 3, /* unreachable, timeout, 5xx, bad response */
	CTL_EXIT_NOT_FOUND = 4,   /* HTTP 404 */
};

/* Print "discoveryctl: message" on stderr and exit with code. */
void util_die(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/*
 * A usage error: print "discoveryctl: message" and a pointer to the help on
 * stderr, and exit with CTL_EXIT_USAGE. Nothing has been sent when it runs.
 */
void util_usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

void *util_malloc(size_t size);
void *util_realloc(void *ptr, size_t size);
char *util_strdup(const char *s);
/* Like util_strdup on the first len bytes; the copy is NUL-terminated. */
char *util_strndup(const char *s, size_t len);

/*
 * Copy at most len bytes of s into a new string with every control
 * character (C0, DEL) replaced by '?', so that text from the network cannot
 * move the cursor, change colours or retitle the user's terminal.
 */
char *util_sanitize(const char *s, size_t len);

/* True when s holds a control character (C0 or DEL). */
int util_has_control(const char *s);

#endif
