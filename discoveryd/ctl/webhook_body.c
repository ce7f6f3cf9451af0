/*
 * webhook_body: the body of `discoveryctl webhooks put NAME` (cmd.h): a
 * webhooks: entry as JSON, from --file (JSON, or YAML: an entry written as
 * in discoveryd.yaml, its keys at the top) and the flags, which set their
 * keys over the file's. The daemon checks it all (the config's own rows):
 * here only what the command line itself gets wrong.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <yaml.h>

#include "cmd.h"
#include "util.h"

#define FILE_MAX  (64u << 10) /* an entry is a few hundred bytes */
#define DEPTH_MAX 8

static char *read_all(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *buf;

	if (!f)
		util_die(CTL_EXIT_USAGE, "--file %s: %s", path,
			 strerror(errno));
	buf = util_malloc(FILE_MAX + 1);
	*len = fread(buf, 1, FILE_MAX + 1, f);
	if (ferror(f) || *len > FILE_MAX)
		util_die(CTL_EXIT_USAGE, "--file %s: %s", path,
			 ferror(f) ? strerror(errno) : "larger than 64 KiB");
	if (f != stdin)
		fclose(f);
	buf[*len] = '\0';
	return buf;
}

/* A YAML node as JSON: mappings and sequences as such, scalars as strings
 * (the daemon reads "4" and 4 alike, as its YAML loader does). */
static cJSON *node_json(yaml_document_t *doc, yaml_node_t *n, int depth)
{
	cJSON *out;

	if (!n || depth > DEPTH_MAX)
		return NULL;
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return cJSON_CreateString((const char *)n->data.scalar.value);
	case YAML_SEQUENCE_NODE:
		out = cJSON_CreateArray();
		for (yaml_node_item_t *i = n->data.sequence.items.start;
		     out && i < n->data.sequence.items.top; i++) {
			cJSON *v = node_json(doc,
					     yaml_document_get_node(doc, *i),
					     depth + 1);

			if (!v || !cJSON_AddItemToArray(out, v)) {
				cJSON_Delete(v);
				cJSON_Delete(out);
				return NULL;
			}
		}
		return out;
	case YAML_MAPPING_NODE:
		out = cJSON_CreateObject();
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
		     out && p < n->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			cJSON *v =
				node_json(doc,
					  yaml_document_get_node(doc, p->value),
					  depth + 1);

			if (!k || k->type != YAML_SCALAR_NODE || !v ||
			    !cJSON_AddItemToObject(out,
						   (const char *)
							   k->data.scalar.value,
						   v)) {
				cJSON_Delete(v);
				cJSON_Delete(out);
				return NULL;
			}
		}
		return out;
	default: return NULL;
	}
}

static cJSON *parse_yaml(const char *path, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	cJSON *out = NULL;

	if (!yaml_parser_initialize(&parser))
		util_die(CTL_EXIT_UNAVAILABLE, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		util_die(CTL_EXIT_USAGE, "--file %s:%zu:%zu: %s", path,
			 parser.problem_mark.line + 1,
			 parser.problem_mark.column + 1,
			 parser.problem ? parser.problem : "not YAML");
	}
	out = node_json(&doc, yaml_document_get_root_node(&doc), 0);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return out;
}

static cJSON *from_file(const char *path)
{
	size_t len, i = 0;
	char *text = read_all(path, &len);
	cJSON *out;

	while (i < len && strchr(" \t\r\n", text[i]))
		i++;
	out = i < len && text[i] == '{' ? cJSON_ParseWithLength(text, len) :
					  parse_yaml(path, text, len);
	free(text);
	if (!cJSON_IsObject(out))
		util_die(CTL_EXIT_USAGE,
			 "--file %s: not a webhooks: entry (a mapping of url, "
			 "secret_file, ...)",
			 path);
	return out;
}

static void set(cJSON *o, const char *key, cJSON *v)
{
	if (!v)
		util_die(CTL_EXIT_UNAVAILABLE, "out of memory");
	cJSON_DeleteItemFromObjectCaseSensitive(o, key);
	cJSON_AddItemToObject(o, key, v);
}

/* "a,b,c" as a JSON list of strings. */
static cJSON *list_of(const char *csv)
{
	cJSON *out = cJSON_CreateArray();
	const char *p = csv;

	while (out && *p) {
		size_t n = strcspn(p, ",");
		char *item;

		if (n == 0)
			util_usage_error("'%s': an empty item in the list",
					 csv);
		item = util_strndup(p, n);
		cJSON_AddItemToArray(out, cJSON_CreateString(item));
		free(item);
		p += n + (p[n] == ',');
	}
	return out;
}

char *webhook_put_body(const struct cmd_args *args)
{
	cJSON *o = args->file ? from_file(args->file) : cJSON_CreateObject();
	cJSON *filter;
	char *text;

	if (!o)
		util_die(CTL_EXIT_UNAVAILABLE, "out of memory");
	if (args->url)
		set(o, "url", cJSON_CreateString(args->url));
	if (args->secret_file)
		set(o, "secret_file", cJSON_CreateString(args->secret_file));
	if (args->ca_file)
		set(o, "ca_file", cJSON_CreateString(args->ca_file));
	if (args->max_in_flight)
		set(o, "max_in_flight",
		    cJSON_CreateString(args->max_in_flight));
	if (args->kinds || args->services) {
		filter = cJSON_GetObjectItemCaseSensitive(o, "filter");
		if (!cJSON_IsObject(filter)) {
			filter = cJSON_CreateObject();
			set(o, "filter", filter);
		}
		if (args->kinds)
			set(filter, "kinds", list_of(args->kinds));
		if (args->services)
			set(filter, "services", list_of(args->services));
	}
	if (!cJSON_GetObjectItemCaseSensitive(o, "url") ||
	    !cJSON_GetObjectItemCaseSensitive(o, "secret_file"))
		util_usage_error("webhooks put: --url and --secret-file (or a "
				 "--file with url and secret_file) are needed");
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text)
		util_die(CTL_EXIT_UNAVAILABLE, "out of memory");
	return text;
}
