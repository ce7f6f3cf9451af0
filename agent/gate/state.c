/*
 * state: the gate's views (see state.h). Builders run on the agent thread
 * (readiness and link callbacks) or the main thread (start, SIGHUP); a
 * mutex serializes them, and request threads never take it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "clock.h"
#include "log.h"
#include "path.h"
#include "state.h"

#define VIEW_GRACE_MS 10000
#define PAGE_MAX      (1024 * 1024) /* a loading_page file larger is refused */

/*
 * The default loading page. It polls the gate's own state endpoint (a
 * prebuilt answer; the app is never touched) once a second, and reloads
 * when the gate opens. Without JavaScript, a meta refresh does the same
 * at the Retry-After pace.
 */
static const char default_page[] =
	"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	"<meta name=\"viewport\" "
	"content=\"width=device-width,initial-scale=1\">\n"
	"<title>Loading&hellip;</title>\n"
	"<noscript><meta http-equiv=\"refresh\" content=\"{{retry_after}}\">"
	"</noscript>\n<style>\n"
	"body{font:16px/1.5 system-ui,sans-serif;background:#f6f7f9;color:#223;"
	"display:flex;min-height:100vh;margin:0;align-items:center;"
	"justify-content:center}\n"
	"main{max-width:32em;padding:2em;text-align:center}\n"
	".spin{width:2.5em;height:2.5em;margin:0 auto 1em;border:.3em solid "
	"#ccd;"
	"border-top-color:#36c;border-radius:50%;animation:s 1s linear "
	"infinite}\n"
	"@keyframes s{to{transform:rotate(360deg)}}\n"
	"code{background:#e8eaf0;padding:.1em .3em;border-radius:3px}\n"
	"</style></head><body><main>\n<div class=\"spin\"></div>\n"
	"<h1>Application components are loading</h1>\n"
	"<p>Waiting for: <code id=\"waiting\">{{waiting_for}}</code></p>\n"
	"<p>This page reloads by itself as soon as they are ready.</p>\n"
	"</main>\n<script>\n(function () {\n"
	"  var delay = 1000;\n"
	"  function poll() {\n"
	"    fetch('/.well-known/discovery-gate', {cache: 'no-store',\n"
	"          headers: {'Accept': 'application/json'}})\n"
	"      .then(function (r) { return r.json(); })\n"
	"      .then(function (s) {\n"
	"        if (s.open) { location.reload(); return; }\n"
	"        document.getElementById('waiting').textContent =\n"
	"          s.waiting_for.join(', ') || '(the link to discoveryd)';\n"
	"        delay = 1000; setTimeout(poll, delay);\n"
	"      })\n"
	"      .catch(function () {\n"
	"        delay = Math.min(delay * 2, 10000); setTimeout(poll, delay);\n"
	"      });\n"
	"  }\n"
	"  setTimeout(poll, delay);\n"
	"})();\n</script>\n</body></html>\n";

struct policy {
	unsigned locked_status;
	long long retry_after_s;
	bool latch;
	struct conf_strlist pass;
	char *page; /* the template: default or the file's */
};

struct gate_state {
	agent_t *agent;
	pthread_mutex_t lock; /* builders only */
	struct policy policy;
	bool latched;
	unsigned long long changes;
	_Atomic(struct gate_view *) view;
	struct gate_view *retired; /* oldest last */
};

/* ---- building ---------------------------------------------------------- */

static const char *reason(unsigned status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 403: return "Forbidden";
	case 423: return "Locked";
	case 503: return "Service Unavailable";
	}
	return "Unknown";
}

/* An answer with body, type and the locked headers when locked; -1 on
 * ENOMEM. */
static int make_answer(struct answer *a, unsigned status, const char *body,
		       const char *type, const struct policy *p, bool locked)
{
	char head[512];
	int n;

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %u %s\r\n%s%s%s"
		     "Cache-Control: no-store\r\n",
		     status, reason(status), type ? "Content-Type: " : "",
		     type ? type : "", type ? "\r\n" : "");
	if (locked)
		n += snprintf(head + n, sizeof(head) - (size_t)n,
			      "Retry-After: %lld\r\nVary: Accept\r\n",
			      p->retry_after_s);
	if (status != 204)
		n += snprintf(head + n, sizeof(head) - (size_t)n,
			      "Content-Length: %zu\r\n", strlen(body));
	a->status = status;
	a->head = strdup(head);
	a->head_len = (size_t)n;
	a->body = strdup(body);
	a->body_len = strlen(body);
	return a->head && a->body ? 0 : -1;
}

static void answer_free(struct answer *a)
{
	free(a->head);
	free(a->body);
}

/* The template with {{waiting_for}} and {{retry_after}} filled in. */
static char *fill_page(const char *tpl, const char *waiting, long long retry)
{
	size_t cap = strlen(tpl) + 64, len = 0;
	char *out = malloc(cap), num[32];

	snprintf(num, sizeof(num), "%lld", retry);
	while (out && *tpl) {
		const char *val = NULL;
		size_t skip = 1, vlen;

		if (!strncmp(tpl, "{{waiting_for}}", 15))
			val = waiting, skip = 15;
		else if (!strncmp(tpl, "{{retry_after}}", 15))
			val = num, skip = 15;
		vlen = val ? strlen(val) : 1;
		if (len + vlen + 1 > cap) {
			char *bigger = realloc(out, (cap = 2 * cap + vlen));

			if (!bigger)
				break;
			out = bigger;
		}
		memcpy(out + len, val ? val : tpl, vlen);
		len += vlen;
		tpl += skip;
	}
	if (out && *tpl) {
		free(out);
		return NULL;
	}
	if (out)
		out[len] = '\0';
	return out;
}

/* The state JSON; *waiting gets "a, b" for the page. NULL on ENOMEM. */
static char *state_body(struct gate_state *s, bool open, char *waiting,
			size_t wsize)
{
	const agent_t *a = s->agent;
	cJSON *o = cJSON_CreateObject(), *req, *wait, *svc;
	char *body;

	waiting[0] = '\0';
	if (!o)
		return NULL;
	cJSON_AddBoolToObject(o, "open", open);
	cJSON_AddBoolToObject(o, "latched", s->latched);
	cJSON_AddBoolToObject(o, "linked", agent_is_linked(a));
	req = cJSON_AddArrayToObject(o, "requires");
	wait = cJSON_AddArrayToObject(o, "waiting_for");
	svc = cJSON_AddObjectToObject(o, "services");
	for (size_t i = 0; i < agent_dependency_count(a); i++) {
		const char *name = agent_dependency_name(a, i);
		bool ready = agent_is_ready(a, name);

		cJSON_AddItemToArray(req, cJSON_CreateString(name));
		cJSON_AddBoolToObject(svc, name, ready);
		if (ready)
			continue;
		cJSON_AddItemToArray(wait, cJSON_CreateString(name));
		snprintf(waiting + strlen(waiting), wsize - strlen(waiting),
			 "%s%s", waiting[0] ? ", " : "", name);
	}
	cJSON_AddNumberToObject(o, "locked_status", s->policy.locked_status);
	cJSON_AddNumberToObject(o, "retry_after",
				(double)s->policy.retry_after_s);
	cJSON_AddBoolToObject(o, "latch", s->policy.latch);
	cJSON_AddNumberToObject(o, "changes", (double)s->changes);
	body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return body;
}

static void view_free(struct gate_view *v)
{
	if (!v)
		return;
	answer_free(&v->locked_html);
	answer_free(&v->locked_json);
	answer_free(&v->state_json);
	answer_free(&v->check);
	for (size_t i = 0; i < v->n_pass; i++)
		free(v->pass[i]);
	free(v->pass);
	free(v);
}

static int copy_pass(struct gate_view *v, const struct conf_strlist *pass)
{
	v->pass = calloc(pass->n + 1, sizeof(char *));
	if (!v->pass)
		return -1;
	for (size_t i = 0; i < pass->n; i++) {
		v->pass[i] = strdup(pass->v[i]);
		if (!v->pass[i])
			return -1;
		v->n_pass++;
	}
	return 0;
}

/* The locked answers' bodies, from the state JSON's waiting list. */
static int build_locked(struct gate_state *s, struct gate_view *v,
			const char *waiting, const char *state)
{
	const cJSON *wait;
	cJSON *o = cJSON_CreateObject(), *parsed = cJSON_Parse(state);
	char *json = NULL, *page;
	unsigned status = s->policy.locked_status;
	int rc = -1;

	if (o && parsed) {
		wait = cJSON_GetObjectItemCaseSensitive(parsed, "waiting_for");
		cJSON_AddStringToObject(o, "error", "locked");
		cJSON_AddStringToObject(o, "message",
					"application components are loading");
		cJSON_AddItemToObject(o, "waiting_for",
				      cJSON_Duplicate(wait, 1));
		cJSON_AddNumberToObject(o, "retry_after",
					(double)s->policy.retry_after_s);
		json = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(o);
	cJSON_Delete(parsed);
	page = fill_page(s->policy.page,
			 waiting[0] ? waiting : "the link to discoveryd",
			 s->policy.retry_after_s);
	if (json && page &&
	    !make_answer(&v->locked_json, status, json, "application/json",
			 &s->policy, true) &&
	    !make_answer(&v->locked_html, status, page,
			 "text/html; charset=utf-8", &s->policy, true))
		rc = 0;
	cJSON_free(json);
	free(page);
	return rc;
}

static struct gate_view *build(struct gate_state *s, bool open)
{
	struct gate_view *v = calloc(1, sizeof(*v));
	char waiting[AGENT_DEPENDS_MAX * 66];
	char *state;

	if (!v)
		return NULL;
	v->open = open;
	v->latched = s->latched;
	v->locked_status = s->policy.locked_status;
	state = state_body(s, open, waiting, sizeof(waiting));
	if (!state || copy_pass(v, &s->policy.pass) ||
	    build_locked(s, v, waiting, state)) {
		cJSON_free(state);
		view_free(v);
		return NULL;
	}
	if (make_answer(&v->state_json, 200, state, "application/json",
			&s->policy, false) ||
	    make_answer(&v->check, open ? 204 : 403, "", NULL, &s->policy,
			!open)) {
		cJSON_free(state);
		view_free(v);
		return NULL;
	}
	cJSON_free(state);
	return v;
}

/* Publish v; retire the old view and free those past their grace. */
static void publish(struct gate_state *s, struct gate_view *v)
{
	struct gate_view *old = atomic_exchange(&s->view, v), **pp;
	long long now = clock_mono_ms();

	if (old) {
		old->retired_at_ms = now;
		old->retired_next = s->retired;
		s->retired = old;
	}
	for (pp = &s->retired; *pp; pp = &(*pp)->retired_next)
		if (now - (*pp)->retired_at_ms > VIEW_GRACE_MS)
			break;
	while (*pp) {
		struct gate_view *dead = *pp;

		*pp = dead->retired_next;
		view_free(dead);
	}
}

/* ---- public ------------------------------------------------------------ */

static void update_locked(struct gate_state *s, const char *why)
{
	const struct gate_view *cur = atomic_load(&s->view);
	bool open = agent_all_ready(s->agent) || s->latched;
	struct gate_view *v;

	if (open && s->policy.latch)
		s->latched = true;
	s->changes++;
	v = build(s, open);
	if (!v) {
		log_error("state_failed", "why=%s reason=out_of_memory", why);
		return;
	}
	bool flipped = !cur || cur->open != open;

	/* Publish first: whoever reads the line gets the new answers. */
	publish(s, v);
	if (flipped)
		log_info(open ? "open" : "locked", "why=%s latched=%s", why,
			 s->latched ? "true" : "false");
	else
		log_info("state", "why=%s open=%s", why,
			 open ? "true" : "false");
}

void gstate_update(struct gate_state *s, const char *why)
{
	pthread_mutex_lock(&s->lock);
	update_locked(s, why);
	pthread_mutex_unlock(&s->lock);
}

static int policy_load(struct policy *p, const struct gconf *c, char *err,
		       size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->locked_status = (unsigned)c->locked_status;
	p->retry_after_s = (c->retry_after_ms + 999) / 1000;
	p->latch = c->latch;
	p->pass.v = calloc(c->pass.n + 1, sizeof(char *));
	for (size_t i = 0; p->pass.v && i < c->pass.n; i++)
		if ((p->pass.v[p->pass.n] = strdup(c->pass.v[i])))
			p->pass.n++;
	if (c->loading_page) {
		FILE *f = fopen(c->loading_page, "rb");
		size_t n = 0;

		p->page = f ? malloc(PAGE_MAX + 1) : NULL;
		if (p->page)
			n = fread(p->page, 1, PAGE_MAX + 1, f);
		if (f)
			fclose(f);
		if (!p->page || n > PAGE_MAX) {
			snprintf(err, errlen,
				 "loading_page: cannot read %s "
				 "(or larger than 1 MiB)",
				 c->loading_page);
			conf_strlist_release(&p->pass);
			free(p->page);
			return -1;
		}
		p->page[n] = '\0';
	} else {
		p->page = strdup(default_page);
	}
	if (!p->page || p->pass.n != c->pass.n) {
		snprintf(err, errlen, "out of memory");
		conf_strlist_release(&p->pass);
		free(p->page);
		return -1;
	}
	return 0;
}

struct gate_state *gstate_new(agent_t *a, const struct gconf *c, char *err,
			      size_t errlen)
{
	struct gate_state *s = calloc(1, sizeof(*s));

	if (!s || policy_load(&s->policy, c, err, errlen)) {
		if (!s)
			snprintf(err, errlen, "out of memory");
		free(s);
		return NULL;
	}
	s->agent = a;
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->view, NULL);
	gstate_update(s, "start");
	if (!atomic_load(&s->view)) {
		snprintf(err, errlen, "out of memory");
		gstate_free(s);
		return NULL;
	}
	return s;
}

int gstate_reload(struct gate_state *s, const struct gconf *c, char *err,
		  size_t errlen)
{
	struct policy fresh, old;

	if (policy_load(&fresh, c, err, errlen))
		return -1;
	pthread_mutex_lock(&s->lock);
	old = s->policy;
	s->policy = fresh;
	if (!fresh.latch)
		s->latched = false;
	update_locked(s, "reload");
	pthread_mutex_unlock(&s->lock);
	conf_strlist_release(&old.pass);
	free(old.page);
	return 0;
}

const struct gate_view *gstate_view(const struct gate_state *s)
{
	return atomic_load_explicit(&((struct gate_state *)s)->view,
				    memory_order_acquire);
}

bool gstate_passes(const struct gate_view *v, const char *target)
{
	return path_passes(target, v->pass, v->n_pass);
}

void gstate_free(struct gate_state *s)
{
	if (!s)
		return;
	view_free(atomic_load(&s->view));
	while (s->retired) {
		struct gate_view *v = s->retired;

		s->retired = v->retired_next;
		view_free(v);
	}
	conf_strlist_release(&s->policy.pass);
	free(s->policy.page);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
