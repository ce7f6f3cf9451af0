/*
 * agent_probe: a libagent client for the integration tests, written only
 * against the public header. It links to a daemon and prints one line per
 * thing libagent tells it, flushed at once, so a test can follow along:
 *
 *   link state=linked epoch=E seq=N recovered=1 reset=0 node=NODE
 *   link state=unlinked code=1006 retry_ms=N
 *   readiness service=cache ready=1
 *   event seq=N kind=invalidate replayed=0 value={"keys":["k"]}
 *
 * usage: agent_probe URL[,URL...] SERVICE INSTANCE [DEPENDENCY...]
 * AGENT_PROBE_ADDRESS, if set, is the instance's address. Lines on stdin
 * report this instance's own status, each answered "set rc=RC":
 *
 *   ready 1|0        agent_set_ready
 *   draining 1|0     agent_set_draining
 *   load 0.42        agent_set_load
 *
 * It runs until stdin closes (or SIGTERM), then destroys the agent.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <discovery/agent.h>

static void on_link(agent_t *a, enum agent_link_state state,
		    const struct agent_link_info *info, void *ud)
{
	(void)a;
	(void)ud;
	if (state == AGENT_LINK_LINKED)
		printf("link state=linked epoch=%s seq=%" PRIu64
		       " recovered=%d reset=%d node=%s\n",
		       info->epoch, info->seq, info->recovered, info->reset,
		       info->node);
	else if (state == AGENT_LINK_UNLINKED)
		printf("link state=unlinked code=%d retry_ms=%u\n",
		       info->close_code, info->retry_ms);
	fflush(stdout);
}

static void on_readiness(agent_t *a, const char *service, bool ready, void *ud)
{
	(void)a;
	(void)ud;
	printf("readiness service=%s ready=%d\n", service, ready);
	fflush(stdout);
}

/* One line from stdin: a status to report. */
static void command(agent_t *a, const char *line)
{
	char word[16];
	double v;
	int rc = AGENT_E_INVALID;

	if (sscanf(line, "%15s %lf", word, &v) == 2) {
		if (strcmp(word, "ready") == 0)
			rc = agent_set_ready(a, v != 0);
		else if (strcmp(word, "draining") == 0)
			rc = agent_set_draining(a, v != 0);
		else if (strcmp(word, "load") == 0)
			rc = agent_set_load(a, v);
	}
	printf("set rc=%d\n", rc);
	fflush(stdout);
}

static void on_event(agent_t *a, const struct agent_event *ev, void *ud)
{
	(void)a;
	(void)ud;
	printf("event seq=%" PRIu64 " kind=%s replayed=%d value=%s\n", ev->seq,
	       ev->kind, ev->replayed, ev->value);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct agent_config cfg;
	struct agent_callbacks cb = { .on_readiness = on_readiness,
				      .on_event = on_event,
				      .on_link = on_link };
	const char *urls[8];
	char err[256], line[128], *list, *url;
	size_t n_urls = 0;
	agent_t *a;
	int rc;

	if (argc < 4) {
		fprintf(stderr,
			"usage: agent_probe URL SERVICE INSTANCE [DEP...]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	agent_config_init(&cfg);
	list = argv[1];
	while (n_urls < 8 && (url = strsep(&list, ",")))
		urls[n_urls++] = url;
	cfg.urls = urls;
	cfg.n_urls = n_urls;
	cfg.service = argv[2];
	cfg.instance = argv[3];
	cfg.address = getenv("AGENT_PROBE_ADDRESS");
	cfg.depends_on = (const char *const *)argv + 4;
	cfg.n_depends_on = (size_t)(argc - 4);
	cfg.backoff_initial_ms = 50;
	cfg.backoff_max_ms = 500;
	cfg.heartbeat_interval_ms = 500;
	cfg.heartbeat_timeout_ms = 1500;
	a = agent_new(&cfg, err, sizeof(err));
	if (!a) {
		fprintf(stderr, "agent_probe: %s\n", err);
		return 1;
	}
	agent_set_callbacks(a, &cb);
	rc = agent_start(a);
	if (rc != 0) {
		fprintf(stderr, "agent_probe: %s\n", agent_strerror(rc));
		agent_destroy(a);
		return 1;
	}
	while (fgets(line, sizeof(line), stdin))
		command(a, line);
	agent_destroy(a);
	return 0;
}
