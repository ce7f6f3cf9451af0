/*
 * webhook_cursor: an endpoint's cursor journal (webhook_cursor.h).
 * Records are {"epoch":"...","seq":N} and "disabled":"why" while the
 * endpoint is; the last valid one is the cursor.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "webhook_cursor.h"

#define CURSOR_REWRITE_AT 512 /* records before the file is rewritten */

/* {"epoch":E,"seq":N} and "disabled":WHY while it is. */
static char *record_text(const char *epoch, uint64_t seq, const char *why)
{
	cJSON *o = cJSON_CreateObject();
	char num[24], *text;

	snprintf(num, sizeof(num), "%llu", (unsigned long long)seq);
	if (!o || !cJSON_AddStringToObject(o, "epoch", epoch) ||
	    !cJSON_AddItemToObject(o, "seq", cJSON_CreateRaw(num)) ||
	    (why[0] && !cJSON_AddStringToObject(o, "disabled", why))) {
		cJSON_Delete(o);
		return NULL;
	}
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
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
		const cJSON *d =
			cJSON_GetObjectItemCaseSensitive(last, "disabled");

		if (cJSON_IsString(e) &&
		    strlen(e->valuestring) <= PROTO_EPOCH_MAX &&
		    (cJSON_IsNumber(s) || text)) {
			snprintf(c->epoch, sizeof(c->epoch), "%s",
				 e->valuestring);
			c->seq = text ? strtoull(text, NULL, 10) :
					(uint64_t)s->valuedouble;
			c->found = true;
			if (cJSON_IsString(d))
				snprintf(c->disabled, sizeof(c->disabled), "%s",
					 d->valuestring);
		}
	}
	cJSON_Delete(records);
	return 0;
}

int webhook_cursor_save(struct webhook_cursor *c, const char *epoch,
			uint64_t seq)
{
	char *text = record_text(epoch, seq, c->disabled);
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

int webhook_cursor_set_disabled(struct webhook_cursor *c, const char *why)
{
	char old[sizeof(c->disabled)], epoch[sizeof(c->epoch)];

	snprintf(old, sizeof(old), "%s", c->disabled);
	snprintf(c->disabled, sizeof(c->disabled), "%s", why);
	snprintf(epoch, sizeof(epoch), "%s", c->epoch);
	if (webhook_cursor_save(c, epoch, c->seq) == 0)
		return 0;
	snprintf(c->disabled, sizeof(c->disabled), "%s", old);
	return -1;
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
