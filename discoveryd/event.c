/*
 * event: construction, one-time framing and reference counting of the events
 * the hub fans out. See event.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "clock.h"
#include "event.h"
#include "registry.h"

struct event *event_new(enum event_kind kind, enum event_scope scope,
			const char *command, cJSON *header, cJSON *value)
{
	struct event *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		cJSON_Delete(header);
		cJSON_Delete(value);
		return NULL;
	}
	ev->refs = 1;
	ev->kind = kind;
	ev->scope = scope;
	ev->created_us = clock_mono_us();
	ev->created_wall_ms = clock_wall_ms();
	snprintf(ev->command, sizeof(ev->command), "%s",
		 command ? command : "DataSend");
	ev->header = header;
	ev->value = value;
	return ev;
}

struct event *event_new_frame(enum event_kind kind, unsigned char *frame,
			      size_t len)
{
	struct event *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return NULL;
	ev->refs = 1;
	ev->kind = kind;
	ev->scope = SCOPE_INSTANCE;
	ev->created_us = clock_mono_us();
	ev->frame = frame;
	ev->len = len;
	return ev;
}

int event_seal(struct event *ev, const char *epoch, uint64_t seq)
{
	struct proto_event pe;

	memset(&pe, 0, sizeof(pe));
	snprintf(pe.epoch, sizeof(pe.epoch), "%s", epoch);
	pe.seq = seq;
	snprintf(pe.kind, sizeof(pe.kind), "%s", event_kind_name(ev->kind));
	snprintf(pe.command, sizeof(pe.command), "%s", ev->command);
	pe.header = ev->header;
	pe.value = ev->value;
	ev->seq = seq;
	ev->frame = (unsigned char *)proto_encode_event(&pe, LWS_PRE, &ev->len);
	return ev->frame ? 0 : -1;
}

struct event *event_ref(struct event *ev)
{
	ev->refs++;
	return ev;
}

void event_unref(struct event *ev)
{
	if (!ev || --ev->refs > 0)
		return;
	cJSON_Delete(ev->header);
	cJSON_Delete(ev->value);
	free(ev->frame);
	free(ev->record);
	free(ev);
}

const char *event_kind_name(enum event_kind kind)
{
	switch (kind) {
	case EVENT_READINESS: return "readiness";
	case EVENT_INVALIDATE: return "invalidate";
	case EVENT_COMMAND: return "command";
	case EVENT_WELCOME: return "welcome";
	case EVENT_ENDPOINTS: return "endpoints";
	}
	return "unknown";
}

const char *event_scope_name(enum event_scope scope)
{
	switch (scope) {
	case SCOPE_ALL: return "all";
	case SCOPE_DEPENDENTS: return "dependents";
	case SCOPE_SERVICE: return "service";
	case SCOPE_INSTANCE: return "instance";
	}
	return "unknown";
}

enum event_kind event_kind_parse(const char *name)
{
	for (int k = EVENT_READINESS; k <= EVENT_COMMAND; k++)
		if (strcmp(name, event_kind_name((enum event_kind)k)) == 0)
			return (enum event_kind)k;
	return 0;
}

enum event_scope event_scope_parse(const char *name)
{
	for (int k = SCOPE_ALL; k <= SCOPE_INSTANCE; k++)
		if (strcmp(name, event_scope_name((enum event_scope)k)) == 0)
			return (enum event_scope)k;
	return 0;
}

bool event_addressed_to(const struct event *ev, const char *service,
			const char *instance, struct service *const *deps,
			size_t n_deps)
{
	switch (ev->scope) {
	case SCOPE_ALL: return true;
	case SCOPE_DEPENDENTS:
		for (size_t i = 0; i < n_deps; i++)
			if (deps[i] && strcmp(deps[i]->name, ev->service) == 0)
				return true;
		return false;
	case SCOPE_SERVICE: return strcmp(service, ev->service) == 0;
	case SCOPE_INSTANCE:
		return strcmp(instance, ev->instance) == 0 &&
		       (!ev->service[0] || strcmp(service, ev->service) == 0);
	}
	return false;
}
