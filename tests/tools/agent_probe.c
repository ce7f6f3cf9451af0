/*
 * agent_probe: a libagent client for the integration tests, written only
 * against the public header. It links to a daemon and prints one line per
 * thing libagent tells it, flushed at once, so a test can follow along:
 *
 *   link state=linked epoch=E seq=N recovered=1 reset=0 node=NODE
 *   link state=unlinked code=1006 retry_ms=N
 *   readiness service=cache ready=1
 *   event seq=N kind=invalidate replayed=0 value={"keys":["k"]}
 *   endpoints service=api index=N n=2 ready=1 api-1=ready,api-2=draining
 *
 * usage: agent_probe URL[,URL...] SERVICE INSTANCE [DEPENDENCY...]
 * AGENT_PROBE_ADDRESS, if set, is the instance's address (and
 * AGENT_PROBE_WEIGHT its weight);
 * AGENT_PROBE_WATCH, if set, the services it watches ("deps": its
 * dependencies; else a comma-separated list). Lines on stdin report this
 * instance's own status, each answered "set rc=RC":
 *
 *   ready 1|0        agent_set_ready
 *   draining 1|0     agent_set_draining
 *   load 0.42        agent_set_load
 *
 * or ask (from the main thread, as an app would):
 *
 *   pick SERVICE     agent_pick: "pick rc=RC addr=ADDR"
 *   picks SERVICE N  N picks: "picks rc=RC ADDR=COUNT ..." (sorted)
 *   held SERVICE     agent_endpoints: "held index=N n=N ready=N"
 *   hold SERVICE     agent_endpoints, kept (at most 16): "hold index=N"
 *   release          every set kept: "released n=N"
 *   readers SERVICE on|off  4 threads reading sets and picking without a
 *                    pause, each set checked whole (a torn or freed set
 *                    fails the check, or ASan); off joins them and says
 *                    "readers reads=N torn=N"
 *
 * AGENT_PROBE_HOST=1 makes it AGENT_DISPATCH_HOST: callbacks run on the
 * main thread, from agent_dispatch when agent_fd is readable.
 *
 * It runs until stdin closes (or SIGTERM), then destroys the agent.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

static void print_set(const char *what, const struct agent_endpoints *set)
{
	printf("%s service=%s index=%" PRIu64 " n=%zu ready=%zu", what,
	       set->service, set->index, set->n, set->n_ready);
	for (size_t i = 0; i < set->n; i++)
		printf("%c%s=%s", i ? ',' : ' ', set->ep[i].instance,
		       set->ep[i].state == AGENT_ENDPOINT_READY ? "ready" :
		       set->ep[i].state == AGENT_ENDPOINT_DRAINING ?
								  "draining" :
								  "notready");
	printf("\n");
	fflush(stdout);
}

static void on_endpoints(agent_t *a, const struct agent_endpoints *set,
			 void *ud)
{
	(void)a;
	(void)ud;
	print_set("endpoints", set);
}

/* N picks of service, counted by address. */
static void picks(agent_t *a, const char *service, long n)
{
	char addrs[16][300], addr[300];
	long counts[16] = { 0 };
	size_t k = 0;
	int rc = 0;

	for (long i = 0; i < n && rc == 0; i++) {
		size_t j;

		if ((rc = agent_pick(a, service, addr, sizeof(addr))) != 0)
			break;
		for (j = 0; j < k && strcmp(addrs[j], addr); j++)
			;
		if (j == k && k < 16)
			snprintf(addrs[k++], sizeof(addrs[0]), "%s", addr);
		if (j < 16)
			counts[j]++;
	}
	printf("picks rc=%d", rc);
	for (size_t j = 0; j < k; j++)
		printf(" %s=%ld", addrs[j], counts[j]);
	printf("\n");
	fflush(stdout);
}

struct readers {
	agent_t *a;
	char service[64];
	atomic_bool stop;
	atomic_ulong reads, torn;
	pthread_t t[4];
	bool running;
};

/* Is set whole? Its counts agree, its strings are strings, its index
 * never goes back on this thread. */
static bool whole(const struct agent_endpoints *set, uint64_t *last)
{
	size_t ready = 0;

	for (size_t i = 0; i < set->n; i++) {
		const struct agent_endpoint *e = &set->ep[i];

		ready += e->state == AGENT_ENDPOINT_READY;
		if (!strchr(e->address, ':') || !e->instance[0] ||
		    e->weight < 1 || e->weight > 1000)
			return false;
	}
	if (ready != set->n_ready || set->index < *last)
		return false;
	*last = set->index;
	return true;
}

static void *read_loop(void *arg)
{
	struct readers *r = arg;
	uint64_t last = 0;
	char addr[300];

	while (!atomic_load(&r->stop)) {
		const struct agent_endpoints *set =
			agent_endpoints(r->a, r->service);

		if (set) {
			if (!whole(set, &last))
				atomic_fetch_add(&r->torn, 1);
			agent_endpoints_release(r->a, set);
		}
		(void)agent_pick(r->a, r->service, addr, sizeof(addr));
		atomic_fetch_add(&r->reads, 1);
	}
	return NULL;
}

static void readers(agent_t *a, const char *service, bool on)
{
	static struct readers r;

	if (on && !r.running) {
		r.a = a;
		snprintf(r.service, sizeof(r.service), "%s", service);
		atomic_store(&r.stop, false);
		for (int i = 0; i < 4; i++)
			pthread_create(&r.t[i], NULL, read_loop, &r);
		r.running = true;
		printf("readers started\n");
	} else if (!on && r.running) {
		atomic_store(&r.stop, true);
		for (int i = 0; i < 4; i++)
			pthread_join(r.t[i], NULL);
		r.running = false;
		printf("readers reads=%lu torn=%lu\n", atomic_load(&r.reads),
		       atomic_load(&r.torn));
	}
	fflush(stdout);
}

/* Sets kept by "hold", as an app holding them a while would. */
static const struct agent_endpoints *kept[16];
static size_t n_kept;

static void hold(agent_t *a, const char *service)
{
	const struct agent_endpoints *set = NULL;

	if (n_kept < 16 && (set = agent_endpoints(a, service)))
		kept[n_kept++] = set;
	printf("hold index=%" PRIu64 "\n", set ? set->index : 0);
}

static void release(agent_t *a)
{
	printf("released n=%zu\n", n_kept);
	while (n_kept)
		agent_endpoints_release(a, kept[--n_kept]);
}

/* Questions about endpoints; false when line is none. */
static bool ask(agent_t *a, const char *line)
{
	char word[16], service[64], addr[300];
	const struct agent_endpoints *set;
	long n;
	int rc;

	if (sscanf(line, "picks %63s %ld", service, &n) == 2) {
		picks(a, service, n);
		return true;
	}
	if (sscanf(line, "readers %63s %15s", service, word) == 2) {
		readers(a, service, strcmp(word, "on") == 0);
		return true;
	}
	if (strcmp(line, "release\n") == 0) {
		release(a);
		fflush(stdout);
		return true;
	}
	if (sscanf(line, "%15s %63s", word, service) != 2)
		return false;
	if (strcmp(word, "hold") == 0) {
		hold(a, service);
	} else if (strcmp(word, "pick") == 0) {
		rc = agent_pick(a, service, addr, sizeof(addr));
		printf("pick rc=%d addr=%s\n", rc, addr);
	} else if (strcmp(word, "held") == 0) {
		if (!(set = agent_endpoints(a, service))) {
			printf("held none\n");
		} else {
			print_set("held", set);
			agent_endpoints_release(a, set);
		}
	} else {
		return false;
	}
	fflush(stdout);
	return true;
}

/* One line from stdin: a status to report. */
static void command(agent_t *a, const char *line)
{
	char word[16];
	double v;
	int rc = AGENT_E_INVALID;

	if (ask(a, line))
		return;
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

/* AGENT_DISPATCH_HOST: stdin's lines and the agent's callbacks, both on
 * this thread. stdin is unbuffered, so poll never misses a line fgets
 * read ahead. */
static void host_loop(agent_t *a, char *line, size_t size)
{
	struct pollfd fds[2] = { { .fd = 0, .events = POLLIN },
				 { .fd = agent_fd(a), .events = POLLIN } };

	setvbuf(stdin, NULL, _IONBF, 0);
	while (poll(fds, 2, -1) >= 0 || errno == EINTR) {
		if (fds[1].revents & POLLIN)
			agent_dispatch(a);
		if (fds[0].revents & (POLLIN | POLLHUP)) {
			if (!fgets(line, (int)size, stdin))
				return;
			command(a, line);
		}
	}
}

int main(int argc, char **argv)
{
	struct agent_config cfg;
	struct agent_callbacks cb = { .on_readiness = on_readiness,
				      .on_event = on_event,
				      .on_link = on_link,
				      .on_endpoints = on_endpoints };
	const char *urls[8], *watch[64];
	char err[256], line[128], *list, *url, *w = getenv("AGENT_PROBE_WATCH");
	size_t n_urls = 0, n_watch = 0;
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
	if (getenv("AGENT_PROBE_WEIGHT"))
		cfg.weight = (uint32_t)atoi(getenv("AGENT_PROBE_WEIGHT"));
	cfg.depends_on = (const char *const *)argv + 4;
	cfg.n_depends_on = (size_t)(argc - 4);
	if (w && strcmp(w, "deps") == 0)
		cfg.watch_depends_on = true;
	while (w && !cfg.watch_depends_on && n_watch < 64 &&
	       (url = strsep(&w, ",")))
		watch[n_watch++] = url;
	cfg.watch = watch;
	cfg.n_watch = n_watch;
	cfg.backoff_initial_ms = 50;
	cfg.backoff_max_ms = 500;
	cfg.heartbeat_interval_ms = 500;
	cfg.heartbeat_timeout_ms = 1500;
	if (getenv("AGENT_PROBE_HOST"))
		cfg.dispatch = AGENT_DISPATCH_HOST;
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
	if (cfg.dispatch == AGENT_DISPATCH_HOST)
		host_loop(a, line, sizeof(line));
	else
		while (fgets(line, sizeof(line), stdin))
			command(a, line);
	release(a);
	agent_destroy(a);
	return 0;
}
