/*
 * watch: discoveryctl endpoints SERVICE --watch. It prints the set, then
 * asks again with a blocking query (?index=I&wait=5m, docs/api.md) and
 * prints each new set as the answer brings it, until interrupted. A set
 * answered with the same index (the wait ran out) is not printed again.
 * After a lost connection or a 5xx it starts over without an index, as a
 * client that may have reached another node must: that node counts its
 * indexes its own way. It stops on a 4xx, with the exit code every other
 * command gives it.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "client.h"
#include "cmd.h"
#include "render.h"
#include "util.h"

#define WATCH_WAIT_MS    (5 * 60 * 1000L) /* the query's wait */
#define WATCH_RETRY_MS   500              /* after an error, doubling */
#define WATCH_RETRY_MAX  8000
#define WATCH_PATH_EXTRA 64 /* "&index=N&wait=5m" */

static void pause_ms(unsigned ms)
{
	nanosleep(&(struct timespec){ .tv_sec = ms / 1000,
				      .tv_nsec = (long)(ms % 1000) * 1000000 },
		  NULL);
}

/*
 * The answer's index, digit for digit (a double cannot hold every 64-bit
 * one): the body is {"service":NAME,"index":N,...}, and a name holds no
 * quote, so the first "index" is the top level's. 0, or -1.
 */
static int index_of(const struct client_response *resp, uint64_t *index)
{
	const char *at = resp->body ? strstr(resp->body, "\"index\":") : NULL;
	char *end;

	if (!at)
		return -1;
	at += strlen("\"index\":");
	if (*at < '0' || *at > '9')
		return -1;
	*index = strtoull(at, &end, 10);
	return 0;
}

/* Print one set: a line saying which, then the table (or the JSON). */
static void show(const struct cmd_settings *settings,
		 const struct client_response *resp, uint64_t index)
{
	cJSON *root = cJSON_ParseWithLength(resp->body, resp->len);
	const cJSON *service =
		cJSON_GetObjectItemCaseSensitive(root, "service");

	if (settings->json) {
		render_json_line(resp->body, resp->len, stdout);
	} else {
		printf("%s index %" PRIu64 "\n",
		       cJSON_IsString(service) ? service->valuestring : "-",
		       index);
		if (!root || render_table(RENDER_ENDPOINTS, root, stdout,
					  settings->color) != 0)
			render_json_line(resp->body, resp->len, stdout);
		printf("\n");
	}
	fflush(stdout);
	cJSON_Delete(root);
}

int watch_endpoints(const struct cmd_settings *settings, const char *path)
{
	/* A blocking answer takes up to wait plus its jitter (wait/16). */
	struct client_config config = {
		.base_url = settings->base_url,
		.token = settings->token,
		.timeout_ms = settings->timeout_ms + WATCH_WAIT_MS +
			      WATCH_WAIT_MS / 16,
		.cacert = settings->cacert,
	};
	char err[CTL_ERR_SIZE];
	struct client *client = client_new(&config, err, sizeof(err));
	size_t size = strlen(path) + WATCH_PATH_EXTRA;
	char *query = util_malloc(size);
	unsigned delay_ms = WATCH_RETRY_MS;
	uint64_t index = 0, shown = 0;
	bool any = false;

	if (!client) {
		fprintf(stderr, CTL_PROG ": %s\n", err);
		free(query);
		return CTL_EXIT_UNAVAILABLE;
	}
	for (;;) {
		struct client_response resp = { 0 };
		uint64_t got;
		int rc;

		if (index)
			snprintf(query, size, "%s&index=%" PRIu64 "&wait=%lds",
				 path, index, WATCH_WAIT_MS / 1000);
		else
			snprintf(query, size, "%s", path);
		rc = client_request(client, "GET", query, NULL, NULL, &resp,
				    err, sizeof(err));
		if (rc == CLIENT_OK && resp.status >= 400 &&
		    resp.status < 500) {
			render_error(resp.status, resp.body, resp.len);
			client_response_release(&resp);
			client_free(client);
			free(query);
			return resp.status == 404 ? CTL_EXIT_NOT_FOUND :
						    CTL_EXIT_REFUSED;
		}
		if (rc == CLIENT_OK && resp.status == 200 &&
		    index_of(&resp, &got) == 0) {
			if (!any || got != shown)
				show(settings, &resp, got);
			index = shown = got;
			any = true;
			delay_ms = WATCH_RETRY_MS;
			client_response_release(&resp);
			continue;
		}
		if (rc == CLIENT_OK)
			snprintf(err, sizeof(err), "HTTP %ld", resp.status);
		client_response_release(&resp);
		fprintf(stderr, CTL_PROG ": %s; again in %u ms\n", err,
			delay_ms);
		index = 0; /* maybe another node next: start over */
		pause_ms(delay_ms);
		if (delay_ms < WATCH_RETRY_MAX)
			delay_ms *= 2;
	}
}
