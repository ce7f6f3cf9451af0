/*
 * loadgen: the benchmarks' measuring instrument (loadgen.h lists its
 * files). It opens N links, spread over the targets (-a, once per
 * server) and P forked workers (-P) and source addresses (-b) to get past
 * the per-process file limit and the per-address port range, links each
 * one in the server's dialect (-m: three over WebSocket, three over raw
 * TCP), and times the connect storm (first connect to last welcome).
 * Then, W + R times, it makes one trigger call (an HTTP call to -H, -t,
 * -d; for the raw TCP dialects a publish on -H) and times, per link, the
 * arrival of the whole event against the moment just before the request
 * was written; the W warm-up rounds are not kept. With -Z it then
 * measures sustained delivery (sustain.c). With -p it reads the servers'
 * VmRSS before the links, after the last welcome and after the idle time
 * (-w), and their CPU time around the sustained windows. One JSON object
 * goes to stdout; errors and notes go to stderr.
 *
 *   loadgen -a 127.0.0.1:5917 -H 127.0.0.1:5916 -n 10000 -P 2 \
 *           -b 127.0.0.1,127.0.0.2 -p $(pidof discoveryd)
 *   loadgen -m redis -a 127.0.0.1:6379 -H 127.0.0.1:6379 -n 1000 -r 0 -Z 5
 */
#include "loadgen.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int write_full(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int read_full(int fd, void *p, size_t n)
{
	char *c = p;

	while (n) {
		ssize_t r = read(fd, c, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: loadgen -a HOST:PORT [-a HOST:PORT ...] -H HOST:PORT "
		"[options]\n"
		"  -a, --target HOST:PORT  a server's WebSocket listener; "
		"repeat it to spread\n"
		"                the links round-robin over several servers\n"
		"  -H, --http HOST:PORT    where the trigger call goes\n"
		"  -m, --dialect D         discovery (discovery.v1, default), "
		"plain (a bare\n"
		"                WebSocket: linked at 101, any text is the "
		"event), engineio\n"
		"                (socket.io 4 over Engine.IO v4's websocket "
		"transport)\n"
		"  -u, --path PATH         the upgrade's path (/, or "
		"/socket.io/?EIO=4&...)\n"
		"  -n N          links (1000)\n"
		"  -P P          worker processes, N/P links each (1)\n"
		"  -b A,B,...    IPv4 source addresses, round-robin (default: "
		"the kernel's)\n"
		"  -c C          links between connect and welcome at once, "
		"all workers\n"
		"                together (500)\n"
		"  -s SVC        service in each hello (web)\n"
		"  -e SVC        each hello watches SVC's endpoints; the timed "
		"message is\n"
		"                its endpoints update (docs/protocol.md)\n"
		"  -F FIFO       the trigger: write \"ready 0\" / \"ready 1\" "
		"in turn to FIFO\n"
		"                (an agent_probe's stdin), not an HTTP call\n"
		"  -G SECONDS    pause before each round's trigger (0), so "
		"that "
		"a server's\n"
		"                coalescing window has passed\n"
		"  -i PREFIX     instance names PREFIX-0, PREFIX-1, ... (lg)\n"
		"  -r R          measured rounds (10)\n"
		"  -W W          warm-up rounds before them, not kept (0)\n"
		"  -t 'M PATH'   the trigger call (\"POST "
		"/api/discovery/cacheready\")\n"
		"  -d BODY       JSON body of the trigger call (none)\n"
		"  -T SECONDS    how long a round waits for every link (10)\n"
		"  -S SECONDS    the storm's whole budget: links not welcomed "
		"by then fail\n"
		"                (0: none; a storm without progress for 10 s "
		"ends anyway)\n"
		"  -w SECONDS    idle between the storm and the first round "
		"(0); links\n"
		"                answer the server's pings meanwhile\n"
		"  -p PID        a server process whose VmRSS (and CPU time) "
		"is read;\n"
		"                repeat for several\n"
		"  -Z SECONDS    after the rounds, sustained delivery: a "
		"closed "
		"loop, then\n"
		"                an open one, each timed over this window (0: "
		"none)\n"
		"  -K K          closed loop: publishes in flight (16)\n"
		"  -O O          open loop: publisher connections (64)\n"
		"-m redis, nats and mqtt speak raw TCP to the peer at -a; the "
		"trigger is a\n"
		"publish to -H (usually the same address), not an HTTP "
		"call.\n"
		"Prints one JSON object. Exit status: 0, or 3 when links "
		"failed to link\n"
		"or missed an event (the JSON is still printed), 1 on errors, "
		"2 on usage.\n");
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	struct addrinfo hints = { .ai_family = AF_INET,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	char host[256];
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return -1;
	memcpy(sa, res->ai_addr, sizeof(*sa));
	freeaddrinfo(res);
	return 0;
}

static int parse_binds(struct opts *o)
{
	char list[4096], *save = NULL;

	if (!o->binds)
		return 0;
	snprintf(list, sizeof(list), "%s", o->binds);
	for (char *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		struct sockaddr_in *sa = &o->src[o->nsrc];

		if (o->nsrc == MAX_SRC)
			return -1;
		memset(sa, 0, sizeof(*sa));
		sa->sin_family = AF_INET;
		if (inet_pton(AF_INET, t, &sa->sin_addr) != 1)
			return -1;
		o->nsrc++;
	}
	return o->nsrc ? 0 : -1;
}

static long num(const char *s, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v >= lo && v <= hi ? v : LONG_MIN;
}

static int parse_dialect(struct opts *o, const char *s)
{
	int d = dialect_parse(s);

	if (d < 0)
		return -1;
	o->dialect = (enum dialect)d;
	return 0;
}

static int add_target(struct opts *o, const char *s)
{
	if (o->ntargets == MAX_TARGETS)
		return -1;
	o->target_names[o->ntargets++] = s;
	return 0;
}

static int add_pid(struct opts *o, const char *s)
{
	long pid = num(s, 1, INT_MAX);

	if (pid == LONG_MIN || o->npids == MAX_PIDS)
		return -1;
	o->pids[o->npids++] = pid;
	return 0;
}

static int parse_opt(struct opts *o, int c, const char *arg)
{
	switch (c) {
	case 'a': return add_target(o, arg);
	case 'H': o->http = arg; break;
	case 'm': return parse_dialect(o, arg);
	case 'u': o->path = arg; break;
	case 'n': o->n = num(arg, 1, 10000000); break;
	case 'P': o->procs = num(arg, 1, MAX_PROCS); break;
	case 'b': o->binds = arg; break;
	case 'c': o->inflight = num(arg, 1, 1000000); break;
	case 's': o->service = arg; break;
	case 'i': o->prefix = arg; break;
	case 'r': o->rounds = num(arg, 0, 100000); break;
	case 'W': o->warmup = num(arg, 0, 100000); break;
	case 't':
		if (sscanf(arg, "%15s %255s", o->method, o->trigger_path) != 2)
			return -1;
		break;
	case 'd': o->body = arg; break;
	case 'T': o->timeout_s = atof(arg); break;
	case 'S': o->storm_s = atof(arg); break;
	case 'w': o->idle_s = atof(arg); break;
	case 'p': return add_pid(o, arg);
	case 'e': o->watch = arg; break;
	case 'F': o->fifo = arg; break;
	case 'G': o->gap_s = atof(arg); break;
	case 'Z': o->sustain_s = atof(arg); break;
	case 'K': o->closed_inflight = num(arg, 1, 4096); break;
	case 'O': o->open_publishers = num(arg, 1, 4096); break;
	default: return -1;
	}
	return 0;
}

static bool opts_valid(const struct opts *o)
{
	return o->ntargets && o->http && o->n != LONG_MIN &&
	       o->procs != LONG_MIN && o->inflight != LONG_MIN &&
	       o->rounds != LONG_MIN && o->warmup != LONG_MIN &&
	       o->procs <= o->n && o->timeout_s > 0 && o->idle_s >= 0 &&
	       o->storm_s >= 0 && o->sustain_s >= 0 &&
	       o->closed_inflight != LONG_MIN && o->open_publishers != LONG_MIN;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = {
		{ "target", required_argument, NULL, 'a' },
		{ "http", required_argument, NULL, 'H' },
		{ "dialect", required_argument, NULL, 'm' },
		{ "path", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct opts){ .service = "web",
			    .prefix = "lg",
			    .n = 1000,
			    .procs = 1,
			    .rounds = 10,
			    .inflight = 500,
			    .closed_inflight = 16,
			    .open_publishers = 64,
			    .timeout_s = 10 };
	snprintf(o->method, sizeof(o->method), "POST");
	snprintf(o->trigger_path, sizeof(o->trigger_path),
		 "/api/discovery/cacheready");
	while ((c = getopt_long(argc, argv,
				"a:H:m:u:n:P:b:c:s:i:r:W:t:d:T:S:w:p:e:F:G:Z:K:"
				"O:h",
				longs, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (parse_opt(o, c, optarg) != 0)
			return -1;
	}
	if (optind != argc || !opts_valid(o))
		return -1;
	for (int t = 0; t < o->ntargets; t++)
		if (parse_addr(o->target_names[t], &o->targets[t]) != 0)
			goto bad_address;
	if (parse_addr(o->http, &o->http_sa) != 0 || parse_binds(o) != 0)
		goto bad_address;
	return 0;
bad_address:
	fprintf(stderr, "loadgen: bad address\n");
	return -1;
}

/* ---- the run ------------------------------------------------------------ */

static void idle(double seconds)
{
	struct timespec ts = { (time_t)seconds,
			       (long)((seconds - (double)(time_t)seconds) *
				      1e9) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct child ch[MAX_PROCS];
	struct run run = { .rss_before = -1, .rss_storm = -1, .rss_idle = -1 };
	struct sustain_run sustained;
	bool sustain_ok = false;
	int rc = 0;

	if (parse_opts(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (parent_raise_nofile(&o) != 0)
		return 1;
	memset(ch, 0, sizeof(ch));
	if (sustain_map(&o) != 0) {
		perror("loadgen: shared mapping");
		return 1;
	}
	run.rss_before = report_rss_kb(&o);
	if (parent_spawn_all(&o, ch) != 0 ||
	    parent_collect_storm(&o, ch, &run) != 0) {
		fprintf(stderr, "loadgen: a worker failed during the storm\n");
		parent_stop_all(&o, ch);
		return 1;
	}
	run.rss_storm = report_rss_kb(&o);
	if (o.idle_s > 0) {
		idle(o.idle_s);
		run.rss_idle = report_rss_kb(&o);
	}
	if (parent_run_rounds(&o, ch, &run) != 0) {
		fprintf(stderr, "loadgen: a worker failed during the rounds\n");
		rc = 1;
	}
	if (rc == 0 && o.sustain_s > 0 && run.welcomed) {
		sustain_ok = sustain_run(&o, ch, &sustained) == 0;
		if (!sustain_ok)
			fprintf(stderr,
				"loadgen: the sustained phases failed\n");
	}
	parent_stop_all(&o, ch);
	if (rc == 0) {
		report_print(&o, &run, sustain_ok ? &sustained : NULL);
		if (run.failed || report_missed(&run))
			rc = 3;
	}
	free(run.rounds);
	return rc;
}
