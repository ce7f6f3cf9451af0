/*
 * render: tables and one-line JSON from the API's answers, and the one-line
 * error report. See render.h.
 *
 * What each answer looks like on screen is data, not code: a column list per
 * kind of answer. A field the server leaves out (an older daemon, a field
 * added later) shows as "-" instead of failing, so the client keeps working
 * across daemon versions.
 */
#include "render.h"

#include <stdlib.h>
#include <string.h>

#include "table.h"
#include "util.h"

/* Longest JSON shown in a table cell; --json has the rest. */
#define CELL_JSON_MAX 60
/* Longest non-JSON error body quoted back to the user. */
#define ERROR_TEXT_MAX 200

enum cell_kind {
	CELL_TEXT,  /* string as is; numbers, bools, null, JSON otherwise */
	CELL_READY, /* true/false as yes/no, green/red on a terminal */
	CELL_MS,    /* milliseconds as a duration: 30s, 5m, 250ms */
	CELL_LIST,  /* array of strings joined by commas */
	CELL_JSON,  /* compact JSON, cut at CELL_JSON_MAX */
};

struct column {
	const char *header;
	const char *field;
	enum cell_kind kind;
};

#define END_COLUMNS                                                            \
	{                                                                      \
		NULL, NULL, CELL_TEXT                                          \
	}

/* clang-format off */
static const struct column service_columns[] = {
	{"NAME", "name", CELL_TEXT},
	{"READY", "ready", CELL_READY},
	{"DECLARED", "declared", CELL_TEXT},
	{"TTL", "ttl_ms", CELL_MS},
	{"MIN_READY", "min_ready", CELL_TEXT},
	{"INSTANCES", "instances", CELL_TEXT},
	{"READY_INSTANCES", "ready_instances", CELL_TEXT},
	END_COLUMNS,
};
/* clang-format on */

/* clang-format off */
static const struct column endpoint_columns[] = {
	{"INSTANCE", "instance", CELL_TEXT},
	{"ADDRESS", "address", CELL_TEXT},
	{"STATE", "state", CELL_TEXT},
	{"WEIGHT", "weight", CELL_TEXT},
	{"LOAD", "load", CELL_TEXT},
	{"TAGS", "tags", CELL_LIST},
	{"NODE", "node", CELL_TEXT},
	END_COLUMNS,
};

static const struct column agent_columns[] = {
	{"SERVICE", "service", CELL_TEXT},
	{"INSTANCE", "instance", CELL_TEXT},
	{"READY", "ready", CELL_READY},
	{"STATE", "state", CELL_TEXT},
	{"ADDRESS", "address", CELL_TEXT},
	{"PEER", "peer", CELL_TEXT},
	{"NODE", "node", CELL_TEXT},
	{"CONNECTED_AT", "connected_at", CELL_TEXT},
	{"LAST_PONG", "last_pong", CELL_TEXT},
	{"DEPENDS_ON", "depends_on", CELL_LIST},
	END_COLUMNS,
};
/* clang-format on */

/* clang-format off */
static const struct column ack_columns[] = {
	{"SEQ", "seq", CELL_TEXT},
	{"DELIVERED", "delivered", CELL_TEXT},
	END_COLUMNS,
};
/* clang-format on */

/* clang-format off */
static const struct column cacheready_columns[] = {
	{"SEQ", "seq", CELL_TEXT},
	{"SERVICE", "service", CELL_TEXT},
	{"READY", "ready", CELL_READY},
	{"DELIVERED", "delivered", CELL_TEXT},
	END_COLUMNS,
};
/* clang-format on */

/* clang-format off */
static const struct column drain_columns[] = {
	{"NODE", "node", CELL_TEXT},
	{"DRAINING", "draining", CELL_READY},
	{"LINKS", "links", CELL_TEXT},
	END_COLUMNS,
};
/* clang-format on */

/* clang-format off */
static const struct column webhook_columns[] = {
	{"NAME", "name", CELL_TEXT},
	{"URL", "url", CELL_TEXT},
	{"CURSOR", "cursor", CELL_TEXT},
	{"LAG", "lag_events", CELL_TEXT},
	{"LAG_AGE", "lag_ms", CELL_MS},
	{"DISABLED", "disabled", CELL_TEXT},
	{"LAST_STATUS", "last_status", CELL_TEXT},
	{"FAILURES", "failures", CELL_TEXT},
	{"SOURCE", "source", CELL_TEXT},
	{"LAST_ERROR", "last_error", CELL_TEXT},
	END_COLUMNS,
};

static const struct column webhook_action_columns[] = {
	{"WEBHOOK", "webhook", CELL_TEXT},
	{"RESULT", "result", CELL_TEXT},
	END_COLUMNS,
};
/* clang-format on */

/* clang-format off */
static const struct column event_columns[] = {
	{"SEQ", "seq", CELL_TEXT},
	{"KIND", "kind", CELL_TEXT},
	{"COMMAND", "command", CELL_TEXT},
	{"HEADER", "header", CELL_JSON},
	{"VALUE", "value", CELL_JSON},
	END_COLUMNS,
};
/* clang-format on */

/* True when value converts to long long exactly (no overflow, no fraction). */
static bool is_integer(double value)
{
	return value > -9.2e18 && value < 9.2e18 &&
	       value == (double)(long long)value;
}

/* Integers as integers (cJSON keeps every number as a double). */
static char *format_number(double value)
{
	char buf[64];

	if (is_integer(value))
		snprintf(buf, sizeof(buf), "%lld", (long long)value);
	else
		snprintf(buf, sizeof(buf), "%g", value);
	return util_strdup(buf);
}

static char *format_ms(double ms)
{
	static const struct {
		long long unit;
		const char *suffix;
	} units[] = { { 3600000, "h" }, { 60000, "m" }, { 1000, "s" } };
	long long value;
	char buf[64];

	if (!is_integer(ms) || ms <= 0)
		return format_number(ms);
	value = (long long)ms;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (value % units[i].unit == 0) {
			snprintf(buf, sizeof(buf), "%lld%s",
				 value / units[i].unit, units[i].suffix);
			return util_strdup(buf);
		}
	snprintf(buf, sizeof(buf), "%lldms", value);
	return util_strdup(buf);
}

static char *format_json(const cJSON *item, size_t max)
{
	char *text = cJSON_PrintUnformatted(item);

	if (!text)
		util_die(CTL_EXIT_UNAVAILABLE, "out of memory");
	if (max && strlen(text) > max)
		strcpy(text + max - 3, "...");
	return text;
}

/* Strings joined by commas; NULL when the array holds anything else. */
static char *format_list(const cJSON *array)
{
	const cJSON *item;
	size_t len = 1;
	size_t used = 0;
	char *text;

	cJSON_ArrayForEach (item, array) {
		if (!cJSON_IsString(item))
			return NULL;
		len += strlen(item->valuestring) + 1;
	}
	if (len == 1)
		return util_strdup("-");
	text = util_malloc(len);
	cJSON_ArrayForEach (item, array) {
		size_t n = strlen(item->valuestring);

		if (used)
			text[used++] = ',';
		memcpy(text + used, item->valuestring, n);
		used += n;
	}
	text[used] = '\0';
	return text;
}

/* Any value as text for a cell; NULL for absent or null (shown as "-"). */
static char *format_value(const cJSON *item)
{
	if (!item || cJSON_IsNull(item))
		return NULL;
	if (cJSON_IsString(item))
		return util_strdup(item->valuestring);
	if (cJSON_IsNumber(item))
		return format_number(item->valuedouble);
	if (cJSON_IsBool(item))
		return util_strdup(cJSON_IsTrue(item) ? "true" : "false");
	return format_json(item, CELL_JSON_MAX);
}

static void set_cell(struct table *t, size_t col, const struct column *column,
		     const cJSON *object)
{
	const cJSON *item =
		cJSON_GetObjectItemCaseSensitive(object, column->field);
	enum table_color color = TABLE_PLAIN;
	char *text = NULL;

	if (column->kind == CELL_READY && cJSON_IsBool(item)) {
		text = util_strdup(cJSON_IsTrue(item) ? "yes" : "no");
		color = cJSON_IsTrue(item) ? TABLE_GREEN : TABLE_RED;
	} else if (column->kind == CELL_MS && cJSON_IsNumber(item)) {
		text = format_ms(item->valuedouble);
	} else if (column->kind == CELL_LIST && cJSON_IsArray(item)) {
		text = format_list(item);
	} else if (column->kind == CELL_JSON && item) {
		text = format_json(item, CELL_JSON_MAX);
	}
	if (!text)
		text = format_value(item);
	table_set(t, col, text, color);
	free(text);
}

/* One row per object of rows (an array), or one row for rows an object. */
static void print_rows(const struct column *columns, const cJSON *rows,
		       FILE *out, bool color)
{
	const char *headers[16];
	size_t ncols = 0;
	struct table *t;
	const cJSON *object;

	while (ncols < sizeof(headers) / sizeof(headers[0]) &&
	       columns[ncols].header) {
		headers[ncols] = columns[ncols].header;
		ncols++;
	}
	t = table_new(ncols, headers);
	if (cJSON_IsObject(rows)) {
		table_add_row(t);
		for (size_t i = 0; i < ncols; i++)
			set_cell(t, i, &columns[i], rows);
	} else {
		cJSON_ArrayForEach (object, rows) {
			table_add_row(t);
			for (size_t i = 0; i < ncols; i++)
				set_cell(t, i, &columns[i], object);
		}
	}
	table_print(t, out, color);
	table_free(t);
}

/* True when object has a field of columns: a row would not be all "-". */
static bool has_any(const struct column *columns, const cJSON *object)
{
	for (; columns->header; columns++)
		if (cJSON_GetObjectItemCaseSensitive(object, columns->field))
			return true;
	return false;
}

/* The array under name in root; or root itself when allow_bare is set. */
static const cJSON *list_of(const cJSON *root, const char *name,
			    bool allow_bare)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, name);

	if (cJSON_IsArray(list))
		return list;
	if (allow_bare && cJSON_IsArray(root))
		return root;
	return NULL;
}

int render_table(enum render_kind kind, const cJSON *root, FILE *out,
		 bool color)
{
	const struct column *columns = NULL;
	const cJSON *rows = cJSON_IsObject(root) ? root : NULL;

	switch (kind) {
	case RENDER_SERVICES:
		columns = service_columns;
		rows = list_of(root, "services", false);
		break;
	case RENDER_SERVICE: columns = service_columns; break;
	case RENDER_AGENTS:
		columns = agent_columns;
		rows = list_of(root, "agents", false);
		break;
	case RENDER_ENDPOINTS:
		columns = endpoint_columns;
		rows = list_of(root, "endpoints", false);
		break;
	case RENDER_ACK: columns = ack_columns; break;
	case RENDER_CACHEREADY: columns = cacheready_columns; break;
	case RENDER_EVENTS:
		columns = event_columns;
		rows = list_of(root, "events", true);
		break;
	case RENDER_DRAIN: columns = drain_columns; break;
	case RENDER_WEBHOOKS:
		columns = webhook_columns;
		rows = list_of(root, "webhooks", false);
		break;
	case RENDER_WEBHOOK_ACTION: columns = webhook_action_columns; break;
	}
	/* A lone object with none of the fields is another kind of answer. */
	if (!columns || !rows ||
	    (cJSON_IsObject(rows) && !has_any(columns, rows)))
		return -1;
	print_rows(columns, rows, out, color);
	return 0;
}

void render_json_line(const char *body, size_t len, FILE *out)
{
	bool in_string = false;
	bool escaped = false;

	for (size_t i = 0; i < len; i++) {
		char c = body[i];

		if (in_string) {
			/* Inside a string every byte is kept, escapes too. */
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		} else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			continue;
		} else if (c == '"') {
			in_string = true;
		}
		fputc(c, out);
	}
	fputc('\n', out);
}

static const char *status_phrase(long status)
{
	if (status >= 300 && status < 400)
		return "the server answered with a redirect (not followed)";
	if (status >= 500)
		return "the server failed to handle the request";
	if (status == 404)
		return "not found";
	return "the server refused the request";
}

/* The first line of a non-JSON body, made safe for the terminal. */
static char *first_line(const char *body, size_t len)
{
	size_t n = 0;

	while (n < len && n < ERROR_TEXT_MAX && body[n] != '\n' &&
	       body[n] != '\r')
		n++;
	return n ? util_sanitize(body, n) : NULL;
}

void render_error(long status, const char *body, size_t len)
{
	cJSON *root = cJSON_ParseWithLength(body, len);
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
	const cJSON *message =
		cJSON_GetObjectItemCaseSensitive(root, "message");
	char *code = NULL;
	char *text = NULL;

	if (cJSON_IsString(error) && error->valuestring[0])
		code = util_sanitize(error->valuestring,
				     strlen(error->valuestring));
	if (cJSON_IsString(message) && message->valuestring[0])
		text = util_sanitize(message->valuestring,
				     strlen(message->valuestring));
	else if (!root)
		text = first_line(body, len);

	fprintf(stderr, CTL_PROG ": %s (HTTP %ld%s%s)\n",
		text ? text : status_phrase(status), status, code ? " " : "",
		code ? code : "");
	free(code);
	free(text);
	cJSON_Delete(root);
}
