/*
 * follow: discoveryctl events --follow, the live event stream (SSE) of
 * GET /api/discovery/events, printed as it comes: one line per event, or
 * with --json each event's JSON on a line of its own. When the stream is
 * lost it comes back from the last id it printed (Last-Event-ID), the way
 * a browser's EventSource does, so no event is missed or shown twice.
 * It runs until interrupted, or until the server refuses it (401, 403, 404:
 * the exit codes of every other command).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "client.h"
#include "cmd.h"
#include "util.h"

#define LINE_MAX_BYTES (1u << 20)

struct sse_state {
	const struct cmd_settings *settings;
	char *line; /* a line being assembled */
	size_t len, cap;
	char id[32];      /* of the event being assembled */
	char last_id[32]; /* of the last event printed */
	char event[32];
	char *data;
	size_t data_len;
};

static void show(struct sse_state *s)
{
	const struct cmd_settings *st = s->settings;
	cJSON *ev = s->data ? cJSON_Parse(s->data) : NULL;

	if (strcmp(s->event, "change") == 0) {
		if (st->json && ev) {
			cJSON_AddStringToObject(ev, "type", "change");
			char *text = cJSON_PrintUnformatted(ev);

			printf("%s\n", text);
			free(text);
		}
	} else if (ev) {
		if (st->json) {
			printf("%s\n", s->data);
		} else {
			const cJSON *kind = cJSON_GetObjectItem(ev, "kind");
			const cJSON *cmd = cJSON_GetObjectItem(ev, "command");
			char *value = cJSON_PrintUnformatted(
				cJSON_GetObjectItem(ev, "value"));

			printf("%-8s %-11s %-10s %.100s\n", s->id,
			       cJSON_IsString(kind) ? kind->valuestring : "-",
			       cJSON_IsString(cmd) ? cmd->valuestring : "-",
			       value ? value : "null");
			free(value);
		}
		snprintf(s->last_id, sizeof(s->last_id), "%s", s->id);
	}
	fflush(stdout);
	cJSON_Delete(ev);
}

/* One line of the stream (without its newline). */
static void on_line(struct sse_state *s, const char *line)
{
	const char *colon;
	const char *value;

	if (!*line) { /* a blank line ends an event */
		if (s->data)
			show(s);
		free(s->data);
		s->data = NULL;
		s->data_len = 0;
		s->id[0] = s->event[0] = '\0';
		return;
	}
	if (line[0] == ':') /* a comment: keep-alive */
		return;
	colon = strchr(line, ':');
	value = colon ? colon + 1 + (colon[1] == ' ') : "";
	if (colon && strncmp(line, "id", (size_t)(colon - line)) == 0)
		snprintf(s->id, sizeof(s->id), "%s", value);
	else if (colon && strncmp(line, "event", (size_t)(colon - line)) == 0)
		snprintf(s->event, sizeof(s->event), "%s", value);
	else if (colon && strncmp(line, "data", (size_t)(colon - line)) == 0) {
		size_t n = strlen(value);

		s->data = util_realloc(s->data, s->data_len + n + 1);
		memcpy(s->data + s->data_len, value, n + 1);
		s->data_len += n;
	}
}

static int on_data(const char *data, size_t len, void *ud)
{
	struct sse_state *s = ud;

	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r')
			continue;
		if (data[i] == '\n') {
			/* Appending keeps one byte free for this terminator. */
			if (!s->cap) {
				s->cap = 256;
				s->line = util_realloc(s->line, s->cap);
			}
			s->line[s->len] = '\0';
			on_line(s, s->line);
			s->len = 0;
			continue;
		}
		if (s->len + 2 > s->cap) {
			if (s->cap >= LINE_MAX_BYTES)
				return 1; /* a line this long is not ours */
			s->cap = s->cap ? s->cap * 2 : 256;
			s->line = util_realloc(s->line, s->cap);
		}
		s->line[s->len++] = data[i];
	}
	return 0;
}

int follow_events(const struct cmd_settings *settings, const char *path)
{
	struct client_config config = {
		.base_url = settings->base_url,
		.token = settings->token,
		.timeout_ms = settings->timeout_ms,
		.cacert = settings->cacert,
	};
	struct sse_state s = { .settings = settings };
	char err[CTL_ERR_SIZE];
	struct client *client = client_new(&config, err, sizeof(err));
	unsigned delay_ms = 500;

	if (!client) {
		fprintf(stderr, CTL_PROG ": %s\n", err);
		return CTL_EXIT_UNAVAILABLE;
	}
	for (;;) {
		long status = 0;
		int rc = client_stream(client, path,
				       s.last_id[0] ? s.last_id : NULL, on_data,
				       &s, &status, err, sizeof(err));

		if (rc == CLIENT_OK && status >= 400 && status != 503) {
			fprintf(stderr,
				CTL_PROG ": the server refused the stream "
					 "(HTTP %ld)\n",
				status);
			client_free(client);
			free(s.line);
			free(s.data);
			return status == 404 ? CTL_EXIT_NOT_FOUND :
					       CTL_EXIT_REFUSED;
		}
		if (rc != CLIENT_OK)
			fprintf(stderr, CTL_PROG ": %s; again in %u ms\n", err,
				delay_ms);
		else
			delay_ms = 500;
		s.len = 0; /* a cut line is not resumed */
		nanosleep(&(struct timespec){ .tv_sec = delay_ms / 1000,
					      .tv_nsec =
						      (long)(delay_ms % 1000) *
						      1000000 },
			  NULL);
		if (delay_ms < 8000)
			delay_ms *= 2;
	}
}
