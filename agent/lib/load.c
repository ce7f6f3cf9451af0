/*
 * load: agent_load, an agent from a YAML file (conf/agent.yaml), and its
 * variants for programs that share the file (extra keys, aliases).
 *
 * The keys are one table for libcommon's conf loader (types, bounds,
 * defaults, FILE:LINE:COL errors); the file is read into a struct file,
 * turned into a struct agent_config, and agent_new validates the whole. The
 * one key conf cannot describe is `meta`, a mapping of free-form names to
 * strings: conf skips it and meta_load reads it from the same file with
 * libyaml's document API.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "agent_int.h"
#include "conf.h"

#define META_KEYS_MAX 64

struct file {
	struct conf_strlist discovery;
	char *service;
	char *instance;
	char *address;
	struct conf_strlist tags;
	int64_t weight;
	struct conf_strlist depends_on;
	struct conf_strlist watch;
	bool watch_depends_on;
	char *token_file;
	char *ca_file;
	int on_disconnect;
	int64_t backoff_initial_ms;
	int64_t backoff_max_ms;
	double backoff_multiplier;
	int64_t heartbeat_interval_ms;
	int64_t heartbeat_timeout_ms;
	int64_t max_message;
};

#define F(field) offsetof(struct file, field)

static const char *const on_disconnect_choices[] = { "keep", "lock", NULL };

/* clang-format off */
static const struct conf_key backoff_keys[] = {
	{ .name = "initial", .type = CONF_DURATION, .offset = F(backoff_initial_ms),
	  .min = 1, .max = 3600000, .def = "100ms",
	  .help = "first reconnect delay ceiling" },
	{ .name = "max", .type = CONF_DURATION, .offset = F(backoff_max_ms),
	  .min = 1, .max = 86400000, .def = "30s",
	  .help = "largest reconnect delay" },
	{ .name = "multiplier", .type = CONF_DOUBLE,
	  .offset = F(backoff_multiplier), .min = 1, .max = 10, .def = "2.0",
	  .help = "growth of the ceiling per attempt" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key heartbeat_keys[] = {
	{ .name = "interval", .type = CONF_DURATION,
	  .offset = F(heartbeat_interval_ms), .min = 10, .max = 3600000,
	  .def = "10s", .help = "ping period" },
	{ .name = "timeout", .type = CONF_DURATION,
	  .offset = F(heartbeat_timeout_ms), .min = 20, .max = 86400000,
	  .def = "30s", .help = "silence after which the link is dropped" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key file_keys[] = {
	{ .name = "discovery", .type = CONF_STRLIST, .offset = F(discovery),
	  .max = AGENT_URLS_MAX, .flags = CONF_REQUIRED,
	  .help = "discoveryd URLs, ws:// or wss://" },
	{ .name = "service", .type = CONF_STRING, .offset = F(service),
	  .flags = CONF_REQUIRED, .help = "this instance's service" },
	{ .name = "instance", .type = CONF_STRING, .offset = F(instance),
	  .help = "instance id (default: the hostname)" },
	{ .name = "address", .type = CONF_STRING, .offset = F(address),
	  .help = "where this instance serves: host:port" },
	{ .name = "tags", .type = CONF_STRLIST, .offset = F(tags),
	  .max = PROTO_TAGS_MAX, .help = "names to select instances by" },
	{ .name = "weight", .type = CONF_INT, .offset = F(weight),
	  .min = PROTO_WEIGHT_MIN, .max = PROTO_WEIGHT_MAX, .def = "100",
	  .help = "share of the traffic, 1-1000" },
	{ .name = "depends_on", .type = CONF_STRLIST, .offset = F(depends_on),
	  .max = AGENT_DEPENDS_MAX, .help = "services to mirror" },
	{ .name = "watch", .type = CONF_STRLIST, .offset = F(watch),
	  .max = PROTO_DEPENDS_MAX,
	  .help = "services whose endpoints to keep" },
	{ .name = "watch_depends_on", .type = CONF_BOOL,
	  .offset = F(watch_depends_on), .def = "false",
	  .help = "keep the endpoints of depends_on" },
	{ .name = "meta", .type = CONF_IGNORE, .help = "string metadata" },
	{ .name = "token_file", .type = CONF_STRING, .offset = F(token_file),
	  .help = "bearer token file" },
	{ .name = "ca_file", .type = CONF_STRING, .offset = F(ca_file),
	  .help = "CA bundle for wss://" },
	{ .name = "on_disconnect", .type = CONF_ENUM,
	  .offset = F(on_disconnect), .def = "keep",
	  .choices = on_disconnect_choices,
	  .help = "flags while unlinked: keep or lock" },
	{ .name = "backoff", .type = CONF_SECTION, .sub = backoff_keys,
	  .present = CONF_NO_FIELD, .help = "reconnect backoff" },
	{ .name = "heartbeat", .type = CONF_SECTION, .sub = heartbeat_keys,
	  .present = CONF_NO_FIELD, .help = "pings to the daemon" },
	{ .name = "max_message", .type = CONF_SIZE, .offset = F(max_message),
	  .min = 1024, .max = 64 * 1024 * 1024, .def = "1MiB",
	  .help = "largest incoming message" },
	{ .name = NULL },
};
/* clang-format on */

static const char *const key_names[] = {
	"discovery",     "service",    "instance",
	"address",       "tags",       "weight",
	"depends_on",    "watch",      "watch_depends_on",
	"meta",          "token_file", "ca_file",
	"on_disconnect", "backoff",    "heartbeat",
	"max_message",   NULL,
};

const char *const *agent_conf_keys(void)
{
	return key_names;
}

static bool ours(const char *name)
{
	for (size_t i = 0; key_names[i]; i++)
		if (!strcmp(key_names[i], name))
			return true;
	return false;
}

static bool is_alias(const struct agent_key_alias *aliases, const char *name)
{
	for (size_t i = 0; aliases && aliases[i].alias; i++)
		if (!strcmp(aliases[i].alias, name))
			return true;
	return false;
}

/* Give the rows of t (the first n_ours are ours) the aliases. A program's
 * mistake, not the file's: 0, or -1 with the reason in msg. */
static int set_aliases(struct conf_key *t, size_t n_ours,
		       const struct agent_key_alias *aliases, char *msg,
		       size_t size)
{
	for (size_t i = 0; aliases && aliases[i].alias; i++) {
		const struct agent_key_alias *al = &aliases[i];
		struct conf_key *row = NULL;

		for (size_t k = 0; k < n_ours && al->key; k++)
			if (!strcmp(t[k].name, al->key))
				row = &t[k];
		if (!row || ours(al->alias) || row->alias ||
		    is_alias(aliases + i + 1, al->alias)) {
			snprintf(msg, size,
				 "aliases: %.64s for %.64s: need "
				 "one new name per key of libagent",
				 al->alias, al->key ? al->key : "(null)");
			return -1;
		}
		row->alias = al->alias;
	}
	return 0;
}

/*
 * file_keys with the aliases, plus an ignore row per extra key (an alias is
 * ours, even if listed there). NULL with the reason in msg.
 */
static struct conf_key *build_table(const char *const *extra_keys,
				    const struct agent_key_alias *aliases,
				    char *msg, size_t size)
{
	size_t n_ours = sizeof(file_keys) / sizeof(file_keys[0]) - 1;
	size_t n_extra = 0, k;
	struct conf_key *t;

	while (extra_keys && extra_keys[n_extra])
		n_extra++;
	t = calloc(n_ours + n_extra + 1, sizeof(*t));
	if (!t) {
		snprintf(msg, size, "out of memory");
		return NULL;
	}
	memcpy(t, file_keys, n_ours * sizeof(*t));
	if (set_aliases(t, n_ours, aliases, msg, size)) {
		free(t);
		return NULL;
	}
	k = n_ours;
	for (size_t i = 0; i < n_extra; i++) {
		if (ours(extra_keys[i]) || is_alias(aliases, extra_keys[i]))
			continue;
		t[k].name = extra_keys[i];
		t[k].type = CONF_IGNORE;
		k++;
	}
	return t;
}

/* The name the file may give `meta` besides its own; NULL if none. */
static const char *meta_alias(const struct conf_key *t)
{
	for (; t->name; t++)
		if (!strcmp(t->name, "meta"))
			return t->alias;
	return NULL;
}

static int meta_error(char *err, size_t errlen, const char *path,
		      const yaml_node_t *node, const char *msg)
{
	snprintf(err, errlen, "%s:%zu:%zu: meta: %s", path,
		 node->start_mark.line + 1, node->start_mark.column + 1, msg);
	return -1;
}

/* The pairs of a `meta:` mapping node into a JSON object. */
static int meta_read(yaml_document_t *doc, yaml_node_t *map, const char *path,
		     cJSON *obj, char *err, size_t errlen)
{
	yaml_node_pair_t *pair;
	size_t count = 0;

	if (map->type == YAML_SCALAR_NODE && map->data.scalar.length == 0)
		return 0; /* "meta:" with nothing */
	if (map->type != YAML_MAPPING_NODE)
		return meta_error(err, errlen, path, map,
				  "need a mapping of names to strings");
	for (pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(doc, pair->value);
		const char *name;

		if (!k || !v || k->type != YAML_SCALAR_NODE ||
		    v->type != YAML_SCALAR_NODE)
			return meta_error(err, errlen, path, v ? v : map,
					  "values must be strings");
		if (++count > META_KEYS_MAX)
			return meta_error(err, errlen, path, k,
					  "too many keys");
		name = (const char *)k->data.scalar.value;
		if (cJSON_GetObjectItemCaseSensitive(obj, name))
			return meta_error(err, errlen, path, k,
					  "duplicate key");
		if (!cJSON_AddStringToObject(obj, name,
					     (const char *)
						     v->data.scalar.value))
			return meta_error(err, errlen, path, k,
					  "out of memory");
	}
	return 0;
}

/*
 * Read the top-level `meta` mapping of path (already checked by conf; named
 * alias there, if not NULL) into *json (malloc'd compact JSON; NULL when
 * absent). 0 or -1 with err.
 */
static int meta_load(const char *path, const char *alias, char **json,
		     char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	FILE *f;
	cJSON *obj = NULL;
	int rc = 0;

	*json = NULL;
	f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open", path);
		return -1;
	}
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "%s: YAML error", path);
		yaml_parser_delete(&parser);
		fclose(f);
		return -1;
	}
	root = yaml_document_get_root_node(&doc);
	if (root && root->type == YAML_MAPPING_NODE) {
		for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
		     p < root->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(&doc, p->key);
			const char *name;

			if (!k || k->type != YAML_SCALAR_NODE)
				continue;
			name = (const char *)k->data.scalar.value;
			if (strcmp(name, "meta") &&
			    (!alias || strcmp(name, alias)))
				continue;
			obj = cJSON_CreateObject();
			rc = obj ? meta_read(&doc,
					     yaml_document_get_node(&doc,
								    p->value),
					     path, obj, err, errlen) :
				   -1;
			break;
		}
	}
	if (!rc && obj) {
		*json = cJSON_PrintUnformatted(obj);
		rc = *json ? 0 : -1;
	}
	cJSON_Delete(obj);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

static agent_t *from_file(const char *path, const struct file *fl,
			  const char *meta, char *err, size_t errlen)
{
	struct agent_config cfg;
	char msg[512];
	agent_t *a;

	agent_config_init(&cfg);
	cfg.urls = (const char *const *)fl->discovery.v;
	cfg.n_urls = fl->discovery.n;
	cfg.service = fl->service;
	cfg.instance = fl->instance;
	cfg.address = fl->address;
	cfg.tags = (const char *const *)fl->tags.v;
	cfg.n_tags = fl->tags.n;
	cfg.weight = (uint32_t)fl->weight;
	cfg.depends_on = (const char *const *)fl->depends_on.v;
	cfg.n_depends_on = fl->depends_on.n;
	cfg.watch = (const char *const *)fl->watch.v;
	cfg.n_watch = fl->watch.n;
	cfg.watch_depends_on = fl->watch_depends_on;
	if (cfg.watch_depends_on && cfg.n_watch) {
		if (err && errlen)
			snprintf(err, errlen,
				 "%s: watch and watch_depends_on exclude each "
				 "other",
				 path);
		return NULL;
	}
	cfg.meta = meta;
	cfg.token_file = fl->token_file;
	cfg.ca_file = fl->ca_file;
	cfg.on_disconnect = fl->on_disconnect == 1 ? AGENT_LOCK : AGENT_KEEP;
	cfg.backoff_initial_ms = (uint32_t)fl->backoff_initial_ms;
	cfg.backoff_max_ms = (uint32_t)fl->backoff_max_ms;
	cfg.backoff_multiplier = fl->backoff_multiplier;
	cfg.heartbeat_interval_ms = (uint32_t)fl->heartbeat_interval_ms;
	cfg.heartbeat_timeout_ms = (uint32_t)fl->heartbeat_timeout_ms;
	cfg.max_message = (size_t)fl->max_message;

	a = agent_new(&cfg, msg, sizeof(msg));
	if (!a && err && errlen)
		snprintf(err, errlen, "%s: %s", path, msg);
	return a;
}

agent_t *agent_load_aliased(const char *yaml_path,
			    const char *const *extra_keys,
			    const struct agent_key_alias *aliases, char *err,
			    size_t errlen)
{
	struct conf_key *table;
	struct file fl;
	char msg[512], *meta = NULL;
	agent_t *a = NULL;

	if (!yaml_path) {
		if (err && errlen)
			snprintf(err, errlen, "no configuration file");
		return NULL;
	}
	table = build_table(extra_keys, aliases, msg, sizeof(msg));
	if (!table) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", yaml_path, msg);
		return NULL;
	}
	memset(&fl, 0, sizeof(fl));
	if (conf_load_file(yaml_path, table, &fl, msg, sizeof(msg)) == 0 &&
	    meta_load(yaml_path, meta_alias(table), &meta, msg, sizeof(msg)) ==
		    0)
		a = from_file(yaml_path, &fl, meta, err, errlen);
	else if (err && errlen)
		snprintf(err, errlen, "%s", msg);
	cJSON_free(meta);
	conf_release(table, &fl);
	free(table);
	return a;
}

agent_t *agent_load_ex(const char *yaml_path, const char *const *extra_keys,
		       char *err, size_t errlen)
{
	return agent_load_aliased(yaml_path, extra_keys, NULL, err, errlen);
}

agent_t *agent_load(const char *yaml_path, char *err, size_t errlen)
{
	return agent_load_aliased(yaml_path, NULL, NULL, err, errlen);
}
