/*
 * webhook_cursor: an endpoint's cursor journal (webhook_cursor.h).
 * Records are {"epoch":"...","seq":N}; the last valid one is the cursor.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "webhook_cursor.h"

#define CURSOR_REWRITE_AT 512 /* records before the file is rewritten */

static char *record_text(const char *epoch, uint64_t seq)
{
	char text[PROTO_EPOCH_MAX * 2 + 64];
	cJSON *s = cJSON_CreateString(epoch);
	char *quoted = s ? cJSON_PrintUnformatted(s) : NULL;

	cJSON_Delete(s);
	if (!quoted)
		return NULL;
	snprintf(text, sizeof(text), "{\"epoch\":%s,\"seq\":%llu}", quoted,
		 (unsigned long long)seq);
	free(quoted);
	return strdup(text);
}

int webhook_cursor_open(struct webhook_cursor *c, const char *state_dir,
			const char *name, char *err, size_t errlen)
{
	struct journal_damage damage;
	char file[PROTO_NAME_MAX + 16];
	cJSON *records = NULL, *last;

	memset(c, 0, sizeof(*c));
	snprintf(file, sizeof(file), "webhook-%s", name);
	if (journal_open_named(&c->journal, state_dir, file, &records, &damage,
			       err, errlen) != 0) {
		cJSON_Delete(records);
		return -1;
	}
	last = cJSON_GetArrayItem(records, cJSON_GetArraySize(records) - 1);
	if (last) {
		const cJSON *e =
			cJSON_GetObjectItemCaseSensitive(last, "epoch");
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(last, "seq");
		const char *text = cJSON_IsRaw(s) ? s->valuestring : NULL;

		if (cJSON_IsString(e) &&
		    strlen(e->valuestring) <= PROTO_EPOCH_MAX &&
		    (cJSON_IsNumber(s) || text)) {
			snprintf(c->epoch, sizeof(c->epoch), "%s",
				 e->valuestring);
			c->seq = text ? strtoull(text, NULL, 10) :
					(uint64_t)s->valuedouble;
			c->found = true;
		}
	}
	cJSON_Delete(records);
	return 0;
}

int webhook_cursor_save(struct webhook_cursor *c, const char *epoch,
			uint64_t seq)
{
	char *text = record_text(epoch, seq);
	int rc;

	if (!text) {
		errno = ENOMEM;
		return -1;
	}
	rc = c->journal.records >= CURSOR_REWRITE_AT ?
		     journal_rewrite(&c->journal, &text, 1) :
		     journal_append(&c->journal, text, strlen(text));
	free(text);
	if (rc == 0) {
		snprintf(c->epoch, sizeof(c->epoch), "%s", epoch);
		c->seq = seq;
		c->found = true;
	}
	return rc;
}

void webhook_cursor_close(struct webhook_cursor *c)
{
	journal_close(&c->journal);
}

void webhook_cursor_remove(struct webhook_cursor *c)
{
	if (c->journal.fd < 0)
		return; /* none: the cursor is a backend's */
	unlink(c->journal.path);
	fsync(c->journal.dir_fd);
	journal_close(&c->journal);
}
