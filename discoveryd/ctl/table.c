/*
 * table: aligned text tables with an optional bold header and coloured
 * cells. See table.h for the contract.
 */
#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define SEPARATOR  "  "
#define ANSI_BOLD  "\033[1m"
#define ANSI_GREEN "\033[32m"
#define ANSI_RED   "\033[31m"
#define ANSI_RESET "\033[0m"

struct cell {
	char *text;
	enum table_color color;
};

struct table {
	size_t ncols;
	size_t nrows; /* body rows, not counting the header */
	size_t cap_rows;
	char **headers;    /* ncols strings */
	struct cell *rows; /* nrows * ncols cells, row-major */
};

struct table *table_new(size_t ncols, const char *const *headers)
{
	struct table *t = util_malloc(sizeof(*t));

	t->ncols = ncols;
	t->nrows = 0;
	t->cap_rows = 0;
	t->rows = NULL;
	t->headers = util_malloc(ncols * sizeof(*t->headers));
	for (size_t i = 0; i < ncols; i++)
		t->headers[i] = util_strdup(headers[i]);
	return t;
}

void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->ncols; i++)
		free(t->headers[i]);
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->rows[i].text);
	free(t->headers);
	free(t->rows);
	free(t);
}

void table_add_row(struct table *t)
{
	if (t->nrows == t->cap_rows) {
		t->cap_rows = t->cap_rows ? 2 * t->cap_rows : 16;
		t->rows = util_realloc(t->rows, t->cap_rows * t->ncols *
							sizeof(*t->rows));
	}
	for (size_t i = 0; i < t->ncols; i++) {
		struct cell *c = &t->rows[t->nrows * t->ncols + i];

		c->text = NULL;
		c->color = TABLE_PLAIN;
	}
	t->nrows++;
}

void table_set(struct table *t, size_t col, const char *text,
	       enum table_color color)
{
	struct cell *c;

	if (t->nrows == 0 || col >= t->ncols)
		return;
	c = &t->rows[(t->nrows - 1) * t->ncols + col];
	free(c->text);
	c->text = text ? util_sanitize(text, strlen(text)) : NULL;
	c->color = color;
}

/* Width on screen: UTF-8 continuation bytes take no column of their own. */
static size_t text_width(const char *s)
{
	size_t width = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			width++;
	return width;
}

static const char *cell_text(const struct cell *c)
{
	return c->text ? c->text : "-";
}

static const char *color_code(enum table_color color)
{
	switch (color) {
	case TABLE_GREEN: return ANSI_GREEN;
	case TABLE_RED: return ANSI_RED;
	case TABLE_PLAIN: break;
	}
	return NULL;
}

/*
 * One line, without its newline. Padding goes outside the escape sequences,
 * and the last column is not padded, so lines carry no trailing blanks.
 */
static void print_line(FILE *out, const size_t *widths, size_t ncols,
		       const char *const *texts, const enum table_color *colors,
		       bool color)
{
	for (size_t i = 0; i < ncols; i++) {
		const char *code = color ? color_code(colors[i]) : NULL;

		if (i > 0)
			fputs(SEPARATOR, out);
		fprintf(out, "%s%s%s", code ? code : "", texts[i],
			code ? ANSI_RESET : "");
		if (i + 1 == ncols)
			break;
		for (size_t w = text_width(texts[i]); w < widths[i]; w++)
			fputc(' ', out);
	}
}

void table_print(const struct table *t, FILE *out, bool color)
{
	size_t *widths = util_malloc(t->ncols * sizeof(*widths));
	const char **texts = util_malloc(t->ncols * sizeof(*texts));
	enum table_color *colors = util_malloc(t->ncols * sizeof(*colors));

	for (size_t i = 0; i < t->ncols; i++)
		widths[i] = text_width(t->headers[i]);
	for (size_t i = 0; i < t->nrows * t->ncols; i++) {
		size_t w = text_width(cell_text(&t->rows[i]));

		if (w > widths[i % t->ncols])
			widths[i % t->ncols] = w;
	}

	for (size_t i = 0; i < t->ncols; i++)
		colors[i] = TABLE_PLAIN;
	fputs(color ? ANSI_BOLD : "", out);
	print_line(out, widths, t->ncols, (const char *const *)t->headers,
		   colors, false);
	fputs(color ? ANSI_RESET "\n" : "\n", out);
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			texts[i] = cell_text(&t->rows[r * t->ncols + i]);
			colors[i] = t->rows[r * t->ncols + i].color;
		}
		print_line(out, widths, t->ncols, texts, colors, color);
		fputc('\n', out);
	}
	free(widths);
	free(texts);
	free(colors);
}
