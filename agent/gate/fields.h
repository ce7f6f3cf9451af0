/*
 * fields: a parsed head's fields, kept as "name\0value\0" pairs in a
 * struct buf as the parsers' callbacks file them, and the lookups the
 * gate makes in them (names in any case, comma-separated lists).
 */
#ifndef GATE_FIELDS_H
#define GATE_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* The next "name\0value\0" pair of fields after *pos; false at the end. */
bool fields_next(const struct buf *fields, size_t *pos, const char **name,
		 const char **value);
/* The first field called name, or NULL; *count gets how many there are. */
const char *fields_get(const struct buf *fields, const char *name,
		       size_t *count);
/* value, a comma-separated list, holds token (any case). */
bool fields_lists(const char *value, const char *token);

#endif
