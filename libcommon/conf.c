/*
 * conf: the table-driven YAML loader behind conf.h.
 *
 * A load is four steps: the defaults of every row are stored (through the
 * same scalar parsers the file goes through); a first pass over libyaml's
 * events checks the shape of the text (syntax, one document, no aliases,
 * nesting at most CONF_MAX_DEPTH); libyaml's document loader builds the node
 * tree, which is walked against the table; missing required keys are checked
 * last. Each step bounds its work: the text is at most CONF_MAX_FILE bytes,
 * and with aliases refused the node graph is a tree walked once.
 *
 * The scalar parsers, and the messages for a value of the wrong type or out
 * of bounds, are in conf_value.c (through conf_int.h); this file is the
 * walk over the YAML, the collections, the defaults and freeing.
 *
 * Choices the header leaves open (those about scalar values are listed in
 * conf_value.c):
 *   - A null value (`key:`, `~`, `null`) for a section means "present, all
 *     defaults"; for a map or a string list it means empty; for any scalar
 *     type, CONF_STRING included, it is an error (write "" for an empty
 *     string), so a forgotten value is never silently a default.
 *   - A CONF_STRLIST default is one entry (the `def` text itself).
 *   - Aliases (*name) are refused: they would let a small file expand into
 *     a huge walk. Anchors alone are harmless and allowed.
 *   - An always-on section (present = CONF_NO_FIELD) that is absent still has
 *     its required keys checked; an optional one only when it appears.
 *   - A row's alias (conf.h) has nothing to do with YAML's: it is a second
 *     name of the key. Both names in one mapping are refused like a
 *     duplicate, so a file never says two things and keeps the last.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "conf.h"
#include "conf_int.h"

#define CONF_MAX_FILE  (1024 * 1024) /* bytes of YAML text */
#define CONF_MAX_DEPTH 32            /* nested sequences and mappings */

struct loader {
	const char *name; /* file name for messages */
	const unsigned char *text;
	size_t len;
	yaml_document_t *doc; /* NULL until the document is loaded */
	bool defaults;        /* storing the table's defaults */
	char *err;
	size_t errlen;
};

/* ---- errors ------------------------------------------------------------ */

/* Where node starts, for fail(); NULL (no position) when node is NULL. */
static const yaml_mark_t *at(const yaml_node_t *node)
{
	return node ? &node->start_mark : NULL;
}

/* Write "name:line:col: message" (or "name: message") to err; returns -1. */
__attribute__((format(printf, 3, 4))) static int fail(const struct loader *ld,
						      const yaml_mark_t *mark,
						      const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!ld->err || ld->errlen == 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (mark)
		snprintf(ld->err, ld->errlen, "%s:%zu:%zu: %s", ld->name,
			 mark->line + 1, mark->column + 1, msg);
	else if (ld->defaults)
		snprintf(ld->err, ld->errlen,
			 "%s: bad default in key table: %s", ld->name, msg);
	else
		snprintf(ld->err, ld->errlen, "%s: %s", ld->name, msg);
	return -1;
}

/*
 * libyaml gives a byte offset, not a mark, for bad encodings. The text before
 * it is valid UTF-8, so count characters the way libyaml's marks do.
 */
static yaml_mark_t mark_of_offset(const struct loader *ld, size_t offset)
{
	yaml_mark_t mark = { offset, 0, 0 };

	for (size_t i = 0; i < offset && i < ld->len; i++) {
		if (ld->text[i] == '\n') {
			mark.line++;
			mark.column = 0;
		} else if ((ld->text[i] & 0xC0) != 0x80) {
			mark.column++;
		}
	}
	return mark;
}

static int yaml_fail(const struct loader *ld, const yaml_parser_t *parser)
{
	const char *problem = parser->problem ? parser->problem : "bad YAML";
	yaml_mark_t mark;

	switch (parser->error) {
	case YAML_MEMORY_ERROR: return fail(ld, NULL, "out of memory");
	case YAML_READER_ERROR:
		mark = mark_of_offset(ld, parser->problem_offset);
		return fail(ld, &mark, "%s", problem);
	default:
		if (parser->context)
			return fail(ld, &parser->problem_mark,
				    "%s (%s at line %zu)", problem,
				    parser->context,
				    parser->context_mark.line + 1);
		return fail(ld, &parser->problem_mark, "%s", problem);
	}
}

/* " in 'path'", or "" at the top level. */
static const char *where(const char *path, char *buf, size_t size)
{
	if (!path[0])
		return "";
	snprintf(buf, size, " in '%s'", path);
	return buf;
}

static void join_path(char *buf, size_t size, const char *path,
		      const char *name)
{
	/* A path only ever appears in messages: cut it if it is too long. */
	if (snprintf(buf, size, "%s%s%s", path, path[0] ? "." : "", name) < 0)
		buf[0] = '\0';
}

/* ---- storing one scalar ------------------------------------------------ */

static int type_error(const struct loader *ld, const struct conf_key *row,
		      const yaml_node_t *node)
{
	char msg[512];

	conf_value_type_error(row, msg, sizeof(msg));
	return fail(ld, at(node), "%s", msg);
}

static int store_custom(const struct loader *ld, const struct conf_key *row,
			void *field, const char *s, const yaml_node_t *node)
{
	char msg[256] = "";

	if (!row->parse)
		return fail(ld, at(node), "'%s' has no parse function",
			    row->name);
	if (row->free)
		row->free(field);
	if (row->parse(s, field, msg, sizeof(msg)) != 0)
		return fail(ld, at(node), "'%s': %s", row->name,
			    msg[0] ? msg : "invalid value");
	return 0;
}

static int store_scalar(const struct loader *ld, const struct conf_key *row,
			void *base, const char *s, const yaml_node_t *node)
{
	void *field = (char *)base + row->offset;
	char msg[512];

	if (row->type == CONF_STRING) {
		char *copy = strdup(s);

		if (!copy)
			return fail(ld, at(node), "out of memory");
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}
	if (row->type == CONF_CUSTOM)
		return store_custom(ld, row, field, s, node);
	if (conf_value_parse(row, field, s, msg, sizeof(msg)) != 0)
		return fail(ld, at(node), "%s", msg);
	return 0;
}

/* ---- walking the document ---------------------------------------------- */

static bool is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = { "",     "~",    "null",
					     "Null", "NULL", NULL };

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (size_t i = 0; nulls[i]; i++)
		if (strcmp((const char *)n->data.scalar.value, nulls[i]) == 0)
			return true;
	return false;
}

/* A scalar's text, or NULL if n is not a scalar or holds a NUL byte. */
static const char *text_of(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE)
		return NULL;
	s = (const char *)n->data.scalar.value;
	return strlen(s) == n->data.scalar.length ? s : NULL;
}

static yaml_node_t *node_at(const struct loader *ld, int index)
{
	return yaml_document_get_node(ld->doc, index);
}

/* The row spelt name, under its name or its alias; NULL if none. */
static const struct conf_key *find_row(const struct conf_key *table,
				       const char *name)
{
	for (; table->name; table++)
		if (strcmp(table->name, name) == 0 ||
		    (table->alias && strcmp(table->alias, name) == 0))
			return table;
	return NULL;
}

/* The key node for name among mapping's pairs before `end`, or NULL. */
static const yaml_node_t *find_key(const struct loader *ld,
				   const yaml_node_t *mapping,
				   const yaml_node_pair_t *end,
				   const char *name)
{
	const yaml_node_pair_t *p;

	for (p = mapping->data.mapping.pairs.start; p < end; p++) {
		const yaml_node_t *key = node_at(ld, p->key);
		const char *s = text_of(key);

		if (s && strcmp(s, name) == 0)
			return key;
	}
	return NULL;
}

static int store_defaults(struct loader *ld, const struct conf_key *table,
			  void *base);
static int walk_mapping(struct loader *ld, const struct conf_key *table,
			void *base, const yaml_node_t *mapping,
			const char *path);

/*
 * After a mapping (NULL when absent or null) was read, report the first
 * required key it lacks; `near` is where to point (NULL: nowhere).
 */
static int check_required(struct loader *ld, const struct conf_key *table,
			  const yaml_node_t *mapping, const yaml_node_t *near,
			  const char *path)
{
	char in[300], sub_path[256];

	for (const struct conf_key *row = table; row->name; row++) {
		const yaml_node_pair_t *end =
			mapping ? mapping->data.mapping.pairs.top : NULL;

		if (mapping &&
		    (find_key(ld, mapping, end, row->name) ||
		     (row->alias && find_key(ld, mapping, end, row->alias))))
			continue;
		if ((row->flags & CONF_REQUIRED) && !row->def)
			return fail(ld, at(near), "missing required key '%s'%s",
				    row->name, where(path, in, sizeof(in)));
		if (row->type != CONF_SECTION || row->present != CONF_NO_FIELD)
			continue;
		join_path(sub_path, sizeof(sub_path), path, row->name);
		if (check_required(ld, row->sub, NULL, near, sub_path) != 0)
			return -1;
	}
	return 0;
}

static int load_section(struct loader *ld, const struct conf_key *row,
			void *base, const yaml_node_t *value, const char *path)
{
	char sub_path[256];

	join_path(sub_path, sizeof(sub_path), path, row->name);
	/* A section that also takes one word instead of a mapping (say,
	 * "auth: none") hands that word to its parse function. */
	if (row->parse && value->type == YAML_SCALAR_NODE && !is_null(value)) {
		const char *s = text_of(value);

		if (!s)
			return fail(ld, at(value), "'%s' contains a NUL byte",
				    row->name);
		return store_custom(ld, row, (char *)base + row->offset, s,
				    value);
	}
	if (row->present != CONF_NO_FIELD)
		*(bool *)((char *)base + row->present) = true;
	if (is_null(value))
		return check_required(ld, row->sub, NULL, value, sub_path);
	if (value->type != YAML_MAPPING_NODE)
		return type_error(ld, row, value);
	return walk_mapping(ld, row->sub, base, value, sub_path);
}

static int compare_names(const void *a, const void *b)
{
	const yaml_node_t *const *x = a, *const *y = b;
	int c = strcmp((const char *)(*x)->data.scalar.value,
		       (const char *)(*y)->data.scalar.value);

	if (c)
		return c;
	return (*x)->start_mark.index < (*y)->start_mark.index ? -1 : 1;
}

/*
 * Check every name of a CONF_MAP's mapping, then look for duplicates by
 * sorting (a map may hold many items; pairwise would be quadratic). The
 * duplicate reported is the one that comes first in the file.
 */
static int check_names(struct loader *ld, const struct conf_key *row,
		       const yaml_node_t *mapping, const char *map_path)
{
	const yaml_node_pair_t *start = mapping->data.mapping.pairs.start;
	size_t n = (size_t)(mapping->data.mapping.pairs.top - start);
	const yaml_node_t **keys, *bad = NULL, *dup = NULL;

	if (n == 0)
		return 0;
	keys = calloc(n, sizeof(*keys));
	if (!keys)
		return fail(ld, at(mapping), "out of memory");
	for (size_t i = 0; i < n && !bad; i++) {
		const char *name = text_of(keys[i] = node_at(ld, start[i].key));

		if (!name || !name[0] ||
		    (row->name_check && !row->name_check(name)))
			bad = keys[i];
	}
	if (!bad) {
		qsort(keys, n, sizeof(*keys), compare_names);
		for (size_t i = 1; i < n; i++) {
			const char *prev = text_of(keys[i - 1]);

			if (strcmp(prev, text_of(keys[i])) == 0 &&
			    (!dup ||
			     keys[i]->start_mark.index < dup->start_mark.index))
				dup = keys[i];
		}
	}
	free(keys);
	if (bad)
		return fail(ld, at(bad), "invalid name '%s' in '%s'",
			    bad->type == YAML_SCALAR_NODE ?
				    (const char *)bad->data.scalar.value :
				    "",
			    map_path);
	if (dup)
		return fail(ld, at(dup), "duplicate key '%s' in '%s'",
			    (const char *)dup->data.scalar.value, map_path);
	return 0;
}

static void free_map(const struct conf_key *row, struct conf_map *map)
{
	for (size_t i = 0; i < map->n; i++) {
		if (map->items)
			conf_release(row->sub,
				     (char *)map->items + i * row->item_size);
		if (map->names)
			free(map->names[i]);
	}
	free(map->names);
	free(map->items);
	map->names = NULL;
	map->items = NULL;
	map->n = 0;
}

/* Each item: a zeroed block, the sub table's defaults, then the file. */
static int load_map(struct loader *ld, const struct conf_key *row, void *base,
		    const yaml_node_t *value, const char *path)
{
	struct conf_map *map = (void *)((char *)base + row->offset);
	const yaml_node_pair_t *pairs;
	char map_path[256], item_path[256];
	size_t n;

	free_map(row, map);
	if (is_null(value))
		return 0;
	if (value->type != YAML_MAPPING_NODE)
		return type_error(ld, row, value);
	join_path(map_path, sizeof(map_path), path, row->name);
	if (check_names(ld, row, value, map_path) != 0)
		return -1;
	pairs = value->data.mapping.pairs.start;
	n = (size_t)(value->data.mapping.pairs.top - pairs);
	if (n == 0)
		return 0;
	map->names = calloc(n, sizeof(*map->names));
	map->items = calloc(n, row->item_size);
	if (!map->names || !map->items) {
		free_map(row, map);
		return fail(ld, at(value), "out of memory");
	}
	map->n = n;
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *item_node = node_at(ld, pairs[i].value);
		const char *name = text_of(node_at(ld, pairs[i].key));
		void *item = (char *)map->items + i * row->item_size;
		int rc;

		map->names[i] = strdup(name);
		if (!map->names[i])
			return fail(ld, at(item_node), "out of memory");
		join_path(item_path, sizeof(item_path), map_path, name);
		if (store_defaults(ld, row->sub, item) != 0)
			return -1;
		if (is_null(item_node))
			rc = check_required(ld, row->sub, NULL, item_node,
					    item_path);
		else if (item_node->type != YAML_MAPPING_NODE)
			rc = fail(ld, at(item_node), "'%s' must be a mapping",
				  item_path);
		else
			rc = walk_mapping(ld, row->sub, item, item_node,
					  item_path);
		if (rc != 0)
			return -1;
	}
	return 0;
}

/* Built aside and swapped in, so a failure leaves the old list intact. */
static int load_strlist(const struct loader *ld, const struct conf_key *row,
			void *base, const yaml_node_t *value)
{
	struct conf_strlist *field = (void *)((char *)base + row->offset);
	struct conf_strlist list = { 0, NULL };
	const yaml_node_item_t *items = NULL;
	size_t n;

	if (value->type == YAML_SEQUENCE_NODE) {
		items = value->data.sequence.items.start;
		n = (size_t)(value->data.sequence.items.top - items);
	} else if (value->type == YAML_SCALAR_NODE) {
		n = is_null(value) ? 0 : 1;
	} else {
		return type_error(ld, row, value);
	}
	if (row->max > 0 && n > (uint64_t)row->max)
		return fail(ld, at(value),
			    "'%s' has %zu entries; at most %" PRId64
			    " are allowed",
			    row->name, n, row->max);
	if (n && !(list.v = calloc(n, sizeof(*list.v))))
		return fail(ld, at(value), "out of memory");
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *entry = items ? node_at(ld, items[i]) :
						   value;
		const char *s = text_of(entry);

		if (!s || is_null(entry)) {
			conf_strlist_release(&list);
			return fail(ld, at(entry),
				    "entries of '%s' must be strings",
				    row->name);
		}
		if (!(list.v[i] = strdup(s))) {
			conf_strlist_release(&list);
			return fail(ld, at(entry), "out of memory");
		}
		list.n++;
	}
	conf_strlist_release(field);
	*field = list;
	return 0;
}

static int set_value(struct loader *ld, const struct conf_key *row, void *base,
		     const yaml_node_t *value, const char *path)
{
	const char *s;

	switch (row->type) {
	case CONF_IGNORE: return 0;
	case CONF_SECTION: return load_section(ld, row, base, value, path);
	case CONF_MAP: return load_map(ld, row, base, value, path);
	case CONF_STRLIST: return load_strlist(ld, row, base, value);
	default: break;
	}
	if (value->type != YAML_SCALAR_NODE)
		return type_error(ld, row, value);
	if (is_null(value))
		return fail(ld, at(value), "'%s' has no value%s", row->name,
			    row->type == CONF_STRING ?
				    " (write \"\" for an empty string)" :
				    "");
	s = text_of(value);
	if (!s)
		return fail(ld, at(value), "'%s' contains a NUL byte",
			    row->name);
	return store_scalar(ld, row, base, s, value);
}

/*
 * Read one mapping against table. The recursion (through sections and map
 * items) follows the document, whose depth check_shape has bounded.
 */
static int walk_mapping(struct loader *ld, const struct conf_key *table,
			void *base, const yaml_node_t *mapping,
			const char *path)
{
	const yaml_node_pair_t *p;
	char buf[300];
	const char *in = where(path, buf, sizeof(buf));

	for (p = mapping->data.mapping.pairs.start;
	     p < mapping->data.mapping.pairs.top; p++) {
		const yaml_node_t *key = node_at(ld, p->key);
		const char *name = text_of(key);
		const struct conf_key *row;
		struct conf_key spelt;

		if (!name)
			return fail(ld, at(key), "keys must be plain names%s",
				    in);
		row = find_row(table, name);
		if (!row)
			return fail(ld, at(key), "unknown key '%s'%s", name,
				    in);
		if (find_key(ld, mapping, p, name))
			return fail(ld, at(key), "duplicate key '%s'%s", name,
				    in);
		if (row->alias &&
		    find_key(ld, mapping, p,
			     strcmp(name, row->name) ? row->name : row->alias))
			return fail(ld, at(key),
				    "'%s' and '%s' are the same "
				    "key; keep one%s",
				    row->name, row->alias, in);
		/* Messages about the value use the file's name for the key. */
		spelt = *row;
		spelt.name = name;
		if (set_value(ld, &spelt, base, node_at(ld, p->value), path))
			return -1;
	}
	return check_required(ld, table, mapping, mapping, path);
}

/* ---- defaults and freeing ---------------------------------------------- */

void conf_strlist_release(struct conf_strlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int store_default_list(const struct loader *ld,
			      const struct conf_key *row, void *base)
{
	struct conf_strlist *field = (void *)((char *)base + row->offset);
	char **v = malloc(sizeof(*v));

	if (!v || !(v[0] = strdup(row->def))) {
		free(v);
		return fail(ld, NULL, "out of memory");
	}
	conf_strlist_release(field);
	field->v = v;
	field->n = 1;
	return 0;
}

static int store_defaults(struct loader *ld, const struct conf_key *table,
			  void *base)
{
	bool outer = ld->defaults;
	int rc = 0;

	ld->defaults = true;
	for (const struct conf_key *row = table; row->name && rc == 0; row++) {
		if (row->type == CONF_SECTION)
			rc = store_defaults(ld, row->sub, base);
		else if (!row->def || row->type == CONF_MAP ||
			 row->type == CONF_IGNORE)
			continue;
		else if (row->type == CONF_STRLIST)
			rc = store_default_list(ld, row, base);
		else
			rc = store_scalar(ld, row, base, row->def, NULL);
	}
	ld->defaults = outer;
	return rc;
}

void conf_release(const struct conf_key *table, void *target)
{
	if (!table || !target)
		return;
	for (const struct conf_key *row = table; row->name; row++) {
		void *field = (char *)target + row->offset;

		switch (row->type) {
		case CONF_STRING:
			free(*(char **)field);
			*(char **)field = NULL;
			break;
		case CONF_STRLIST: conf_strlist_release(field); break;
		case CONF_CUSTOM:
			if (row->free)
				row->free(field);
			break;
		case CONF_SECTION: conf_release(row->sub, target); break;
		case CONF_MAP: free_map(row, field); break;
		default: break;
		}
	}
}

/* ---- loading ----------------------------------------------------------- */

/*
 * A pass over the events before building the tree: syntax errors, a second
 * document, aliases and deep nesting are reported here, at their position,
 * without ever holding more than one event.
 */
static int check_shape(const struct loader *ld)
{
	yaml_parser_t parser;
	yaml_event_t event;
	int depth = 0, documents = 0, rc = 0;
	bool done = false;

	if (!yaml_parser_initialize(&parser))
		return fail(ld, NULL, "out of memory");
	yaml_parser_set_input_string(&parser, ld->text, ld->len);
	while (rc == 0 && !done) {
		if (!yaml_parser_parse(&parser, &event)) {
			rc = yaml_fail(ld, &parser);
			break;
		}
		switch (event.type) {
		case YAML_STREAM_END_EVENT: done = true; break;
		case YAML_DOCUMENT_START_EVENT:
			if (++documents > 1)
				rc = fail(ld, &event.start_mark,
					  "only one "
					  "YAML document is allowed");
			break;
		case YAML_ALIAS_EVENT:
			rc = fail(ld, &event.start_mark,
				  "aliases (*%s) are not supported",
				  (const char *)event.data.alias.anchor);
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++depth > CONF_MAX_DEPTH)
				rc = fail(ld, &event.start_mark,
					  "nested deeper than %d levels",
					  CONF_MAX_DEPTH);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT: depth--; break;
		default: break;
		}
		yaml_event_delete(&event);
	}
	yaml_parser_delete(&parser);
	return rc;
}

static int load_document(const struct loader *ld, yaml_document_t *doc)
{
	yaml_parser_t parser;
	int rc = 0;

	if (!yaml_parser_initialize(&parser))
		return fail(ld, NULL, "out of memory");
	yaml_parser_set_input_string(&parser, ld->text, ld->len);
	if (!yaml_parser_load(&parser, doc))
		rc = yaml_fail(ld, &parser); /* doc is freed by libyaml */
	yaml_parser_delete(&parser);
	return rc;
}

static int walk_root(struct loader *ld, const struct conf_key *table,
		     void *target)
{
	const yaml_node_t *root = yaml_document_get_root_node(ld->doc);

	if (!root || is_null(root))
		return check_required(ld, table, NULL, NULL, "");
	if (root->type != YAML_MAPPING_NODE)
		return fail(ld, at(root),
			    "the top level must be a mapping of keys");
	return walk_mapping(ld, table, target, root, "");
}

int conf_load_string(const char *text, size_t len, const char *name,
		     const struct conf_key *table, void *target, char *err,
		     size_t errlen)
{
	struct loader ld = { .name = name ? name : "<string>",
			     .text = (const unsigned char *)(text ? text : ""),
			     .len = text ? len : 0,
			     .err = err,
			     .errlen = errlen };
	yaml_document_t doc;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (len > CONF_MAX_FILE)
		return fail(&ld, NULL,
			    "larger than %d bytes (1 MiB), the "
			    "limit for a config file",
			    CONF_MAX_FILE);
	if (store_defaults(&ld, table, target) != 0 || check_shape(&ld) != 0 ||
	    load_document(&ld, &doc) != 0)
		return -1;
	ld.doc = &doc;
	rc = walk_root(&ld, table, target);
	yaml_document_delete(&doc);
	return rc;
}

int conf_load_file(const char *path, const struct conf_key *table, void *target,
		   char *err, size_t errlen)
{
	struct loader ld = { .name = path, .err = err, .errlen = errlen };
	char *buf;
	size_t len;
	FILE *f;
	int rc;

	f = fopen(path, "re");
	if (!f)
		return fail(&ld, NULL, "cannot open: %s", strerror(errno));
	buf = malloc(CONF_MAX_FILE + 1);
	if (!buf) {
		fclose(f);
		return fail(&ld, NULL, "out of memory");
	}
	len = fread(buf, 1, CONF_MAX_FILE + 1, f);
	if (ferror(f))
		rc = fail(&ld, NULL, "cannot read: %s", strerror(errno));
	else
		rc = conf_load_string(buf, len, path, table, target, err,
				      errlen);
	fclose(f);
	free(buf);
	return rc;
}

const char *conf_default_path(const char *name)
{
	static __thread char path[256];

	snprintf(path, sizeof(path), "conf/%s", name);
	if (access(path, R_OK) == 0)
		return path;
	snprintf(path, sizeof(path), "/etc/discovery/%s", name);
	return path;
}

int conf_load_file_ignoring(const char *path, const struct conf_key *table,
			    const char *const *ignore, void *target, char *err,
			    size_t errlen)
{
	size_t n = 0, extra = 0;
	struct conf_key *all;
	int rc;

	while (table[n].name)
		n++;
	while (ignore && ignore[extra])
		extra++;
	all = calloc(n + extra + 1, sizeof(*all));
	if (!all) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	memcpy(all, table, n * sizeof(*all));
	for (size_t i = 0; i < extra; i++) {
		all[n + i].name = ignore[i];
		all[n + i].type = CONF_IGNORE;
	}
	rc = conf_load_file(path, all, target, err, errlen);
	free(all);
	return rc;
}
