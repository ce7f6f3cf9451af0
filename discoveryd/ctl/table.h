/*
 * table: aligned plain-text tables with a header row, as `kubectl get` or
 * `consul members` print them.
 *
 * Columns are separated by two spaces and padded to the widest cell
 * (counted in characters, not bytes, so UTF-8 names line up). Colour is
 * optional and decided by the caller: with it, the header is bold and a cell
 * may be green or red; without it, the output is the same text minus the
 * escape sequences, so `| grep` and `| awk` see what the user sees.
 *
 * Cells are copied, with control characters replaced (they come from the
 * server and must not reach the terminal as escape sequences).
 */
#ifndef DISCOVERYCTL_TABLE_H
#define DISCOVERYCTL_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum table_color {
	TABLE_PLAIN = 0,
	TABLE_GREEN,
	TABLE_RED,
};

struct table;

/* A table of ncols columns named by headers (copied). */
struct table *table_new(size_t ncols, const char *const *headers);
void table_free(struct table *t);

/* Start a new row; its cells are empty until table_set fills them. */
void table_add_row(struct table *t);

/* Set cell col of the last row to text (copied; NULL shows as "-"). */
void table_set(struct table *t, size_t col, const char *text,
	       enum table_color color);

/* Write the table to out, with ANSI colours when color is true. */
void table_print(const struct table *t, FILE *out, bool color);

#endif
