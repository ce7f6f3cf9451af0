/*
 * conf_int: what the loader (conf.c) uses from the scalar parsers
 * (conf_value.c). Internal to libcommon: programs include conf.h only.
 *
 * Both functions write a message without the "file:line:col: " prefix, which
 * the loader adds, since only it knows the position in the YAML text.
 */
#ifndef DISCOVERY_CONF_INT_H
#define DISCOVERY_CONF_INT_H

#include <stddef.h>

#include "conf.h"

/*
 * Parse s, the text of a scalar, as row's type (CONF_INT, CONF_BOOL,
 * CONF_DOUBLE, CONF_DURATION, CONF_SIZE, CONF_ADDR or CONF_ENUM), check it
 * against row's bounds and store it in field. Returns 0, or -1 with the
 * reason in msg and field untouched. Strings and CONF_CUSTOM are the
 * loader's: any other type is an error.
 */
int conf_value_parse(const struct conf_key *row, void *field, const char *s,
		     char *msg, size_t size);

/*
 * Write "'name' must be <what row's type takes>" to msg, or for an enum the
 * list of its choices; returns -1. For a value of the wrong type or shape.
 */
int conf_value_type_error(const struct conf_key *row, char *msg, size_t size);

#endif
