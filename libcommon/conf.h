/*
 * conf: table-driven YAML configuration on libyaml.
 *
 * A program describes its file with a table of struct conf_key rows, one per
 * key: name, type, bounds, default and where the value goes (an offset into
 * the program's own config struct), in the spirit of Redis's config.c. The
 * loader walks the libyaml document against the table:
 *
 *   1. every key with a default gets it (parsed by the same code as the file);
 *   2. the document is read; each value is checked for type and bounds;
 *   3. unknown keys, duplicate keys (a key and its alias count as one),
 *      wrong types and missing required keys are errors, reported as
 *      "FILE:LINE:COL: message" (1-based line and column of the offending
 *      node).
 *
 * Cross-field checks are the caller's, after conf_load returns. On error
 * nothing needs freeing by the caller beyond conf_release (which is always safe
 * to call on a target that conf_load filled, even partly).
 *
 * Scalars:
 *   CONF_STRING    char *              (malloc'd, NUL-terminated)
 *   CONF_INT       int64_t             bounds min..max
 *   CONF_BOOL      bool                true/false/yes/no/on/off
 *   CONF_DOUBLE    double              bounds min..max (as integers)
 *   CONF_DURATION  int64_t, in ms      "250ms", "10s", "5m", "1h", "0"; bounds
 * in ms CONF_SIZE      int64_t, in bytes   "512B", "64KiB", "1MiB", "1GiB",
 * bare number = bytes CONF_ADDR      struct conf_addr    "host:port",
 * "[v6]:port"; port 0..65535 CONF_ENUM      int                 index of the
 * value in `choices` CONF_CUSTOM    anything            parsed by `parse` (e.g.
 * "true or a command") Collections: CONF_STRLIST   struct conf_strlist a
 * sequence of scalars (a lone scalar is a list of one); at most `max` entries
 *   CONF_SECTION   a nested mapping whose keys are the `sub` table; its offsets
 *                  are relative to the same target struct as the parent's. If
 *                  `present` is not CONF_NO_FIELD, a bool there is set when the
 *                  section appears in the file (e.g. "auth:" absent = no auth).
 *                  If `parse` is set, a plain scalar is accepted instead of
 *                  the mapping and handed to parse with the field at
 *                  `offset` (e.g. "auth: none"); `present` is then not set.
 *   CONF_MAP       struct conf_map     a mapping of user-chosen names to items;
 *                  each item is a mapping read with the `sub` table into a
 *                  zeroed block of `item_size` bytes (offsets relative to the
 *                  item). `name_check` may reject a name.
 *   CONF_IGNORE    the key is allowed and its whole value skipped (another
 *                  reader of the same file owns it).
 */
#ifndef DISCOVERY_CONF_H
#define DISCOVERY_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum conf_type {
	CONF_STRING = 1,
	CONF_INT,
	CONF_BOOL,
	CONF_DOUBLE,
	CONF_DURATION,
	CONF_SIZE,
	CONF_ADDR,
	CONF_ENUM,
	CONF_CUSTOM,
	CONF_STRLIST,
	CONF_SECTION,
	CONF_MAP,
	CONF_IGNORE,
};

#define CONF_NO_FIELD ((size_t)-1)

/* Row flags. */
#define CONF_REQUIRED 0x1u /* an error if absent (and no default) */

struct conf_addr {
	char host[256]; /* without brackets for IPv6 */
	int port;       /* 0..65535; 0 = let the kernel pick */
};

struct conf_strlist {
	size_t n;
	char **v; /* n malloc'd strings */
};

struct conf_map {
	size_t n;
	char **names; /* n malloc'd names */
	void *items;  /* n * item_size bytes, malloc'd */
};

/*
 * Parse one scalar into field. Return 0, or -1 with a message (without the
 * file:line:col prefix, which the loader adds) in err. On failure, field must
 * still be freeable by the row's conf_free_fn.
 */
typedef int (*conf_parse_fn)(const char *scalar, void *field, char *err,
			     size_t errlen);
/*
 * Free what a conf_parse_fn allocated in field (may be NULL: nothing to free),
 * and leave field empty (pointers NULL): the loader calls it before storing a
 * value over the default, conf_release may run twice, and a map item's field
 * may be all zero bytes.
 */
typedef void (*conf_free_fn)(void *field);
/* Return true when name is acceptable as a CONF_MAP key. */
typedef bool (*conf_name_fn)(const char *name);

struct conf_key {
	const char *name;
	/* Another spelling of the same key (Redis's "slaveof" for "replicaof"):
	 * the file may use either, not both; messages say the one it used. */
	const char *alias;
	enum conf_type type;
	size_t offset;   /* of the field in the target (or item) struct */
	int64_t min;     /* INT/DOUBLE/DURATION/SIZE lower bound */
	int64_t max;     /* upper bound; STRLIST: max entries; 0 = no bound */
	const char *def; /* default, spelt as in YAML; NULL = none */
	unsigned flags;
	const struct conf_key *sub; /* SECTION, MAP: rows, ended by {NULL} */
	size_t present;             /* SECTION: bool set when present */
	size_t item_size;           /* MAP: size of one item */
	const char *const *choices; /* ENUM: NULL-ended list */
	conf_parse_fn parse;        /* CUSTOM */
	conf_free_fn free;          /* CUSTOM */
	conf_name_fn name_check;    /* MAP: optional */
	const char *help;           /* one line, for docs and errors */
};

/*
 * Load path into target according to table (ended by a row with name NULL).
 * target must be zeroed (or emptied by conf_release) beforehand. Returns 0, or
 * -1 with "path:line:col: message" (or "path: message" when there is no
 * position, e.g. the file cannot be opened) in err.
 */
int conf_load_file(const char *path, const struct conf_key *table, void *target,
		   char *err, size_t errlen);

/*
 * conf_load_file, with the top-level keys named in ignore (NULL-ended) also
 * allowed and skipped: programs that share a file with libagent (the
 * sidecar, the gate) pass agent_conf_keys().
 */
int conf_load_file_ignoring(const char *path, const struct conf_key *table,
			    const char *const *ignore, void *target, char *err,
			    size_t errlen);

/* The same from a string already in memory; name is used in messages. */
int conf_load_string(const char *text, size_t len, const char *name,
		     const struct conf_key *table, void *target, char *err,
		     size_t errlen);

/* Free every string, list and map that a load stored in target. */
void conf_release(const struct conf_key *table, void *target);

/* Helpers, also used by programs for command-line flags. */
int conf_parse_duration(const char *s, int64_t *ms);        /* 0 or -1 */
int conf_parse_size(const char *s, int64_t *bytes);         /* 0 or -1 */
int conf_parse_addr(const char *s, struct conf_addr *addr); /* 0 or -1 */

/* redis://[[user]:password@]host[:port][/db] (cluster.redis). */
struct redis_url {
	struct conf_addr addr; /* port 6379 when absent */
	char user[128];        /* "" = the default user */
	char password[256];    /* "" = none */
	int db;                /* 0..(1<<20) */
};
/* 0, or -1 with a message naming what is wrong in err. */
int conf_redis_url_parse(const char *s, struct redis_url *u, char *err,
			 size_t errlen);
/*
 * Resolve addr for a listening socket (AF_UNSPEC, passive: "" is every
 * interface) into *ss. 0, or -1 with "what: host: reason" in err.
 */
struct sockaddr_storage;
int conf_addr_resolve(const struct conf_addr *addr, const char *what,
		      struct sockaddr_storage *ss, char *err, size_t errlen);
/* Format "host:port" (brackets for IPv6) into buf; returns buf.
 * CONF_ADDR_TEXT holds any: a 255-byte name, the brackets, a port. */
#define CONF_ADDR_TEXT 300
const char *conf_addr_format(const struct conf_addr *addr, char *buf,
			     size_t size);
void conf_strlist_release(struct conf_strlist *l);

/*
 * The config file a program reads without -c (man discoveryd, FILES):
 * conf/NAME when run from the source tree (it exists there), else
 * /etc/discovery/NAME.
 * Returns a static string.
 */
const char *conf_default_path(const char *name);

#endif
