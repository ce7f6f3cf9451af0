/*
 * util: allocation that exits on failure, fatal errors, and sanitising text
 * that came from the server before it reaches a terminal. See util.h.
 */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void util_die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs(CTL_PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

void util_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(CTL_PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry '" CTL_PROG " help' for usage.\n", stderr);
	exit(CTL_EXIT_USAGE);
}

void *util_malloc(size_t size)
{
	/* malloc(0) may return NULL on success; never hand that back. */
	void *p = malloc(size ? size : 1);

	if (!p)
		util_die(CTL_EXIT_UNAVAILABLE, "out of memory");
	return p;
}

void *util_realloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);

	if (!p)
		util_die(CTL_EXIT_UNAVAILABLE, "out of memory");
	return p;
}

char *util_strndup(const char *s, size_t len)
{
	char *copy = util_malloc(len + 1);

	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

char *util_strdup(const char *s)
{
	return util_strndup(s, strlen(s));
}

static int is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

char *util_sanitize(const char *s, size_t len)
{
	char *copy = util_strndup(s, len);

	for (char *p = copy; *p; p++)
		if (is_control((unsigned char)*p))
			*p = '?';
	return copy;
}

int util_has_control(const char *s)
{
	for (; *s; s++)
		if (is_control((unsigned char)*s))
			return 1;
	return 0;
}
