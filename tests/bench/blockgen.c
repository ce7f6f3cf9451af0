/*
 * blockgen: the blocking-query benchmark's load generator (docs/bench.md,
 * blocking_wakeup_1k_ms). Each round it reads the service's index, opens N
 * connections that each send one blocking query for it
 * (GET .../endpoints?state=any&index=I&wait=10m), waits until the daemon's
 * /metrics says all N are blocked, then makes one change (writes a line to
 * the FIFO an agent_probe reads its status from) and times, from just
 * before that write, the moment each caller holds its whole answer. One
 * thread, one epoll set, non-blocking sockets: reading 1,000 answers costs
 * it far less than the daemon's work it measures.
 *
 *   blockgen -H HOST:PORT -s SERVICE -n N -f FIFO [-r ROUNDS] [-p PID]
 *
 * It prints one JSON line: per-round last/p50 (ms), their medians, how many
 * answered, and with -p the daemon's threads and RSS growth per blocked
 * caller in the last round.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS_MAX 64
#define ANSWER_MAX 65536

struct caller {
	int fd;
	size_t len;
	char buf[ANSWER_MAX];
	double done_ms; /* 0: not yet */
	int status;
};

static struct sockaddr_in server;
static char host_port[64], service[64];

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what)
{
	fprintf(stderr, "blockgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0)
		die("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&server, sizeof(server)) != 0)
		die("connect");
	return fd;
}

/* One plain GET on a fresh connection: the whole answer in buf. */
static size_t get(const char *path, char *buf, size_t size)
{
	int fd = dial();
	size_t len = 0;
	ssize_t n;

	dprintf(fd, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
		path, host_port);
	while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
	return len;
}

static unsigned long long index_now(void)
{
	static char buf[1 << 20];
	char path[160];
	const char *h;

	snprintf(path, sizeof(path),
		 "/api/discovery/services/%s/endpoints?state=any", service);
	get(path, buf, sizeof(buf));
	h = strcasestr(buf, "\r\nX-Discovery-Index:");
	if (!h) {
		fprintf(stderr, "blockgen: no index in %.200s\n", buf);
		exit(1);
	}
	return strtoull(h + 20, NULL, 10);
}

static long blocked_now(void)
{
	static char buf[1 << 20];
	const char *m;

	get("/metrics", buf, sizeof(buf));
	m = strstr(buf, "\ndiscovery_http_blocked ");
	return m ? strtol(m + 24, NULL, 10) : -1;
}

/* The answer is whole: head, then Content-Length bytes. */
static int whole(struct caller *c)
{
	const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
	const char *cl;

	if (!end)
		return 0;
	cl = strcasestr(c->buf, "\r\nContent-Length:");
	if (!cl || cl > end)
		return 0;
	return (size_t)(end + 4 - c->buf) + strtoul(cl + 17, NULL, 10) <=
	       c->len;
}

static long proc_field(long pid, const char *field)
{
	char path[64], line[256];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0)
			v = strtol(line + strlen(field), NULL, 10);
	fclose(f);
	return v;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return n ? v[n / 2] : -1;
}

int main(int argc, char **argv)
{
	int n = 1000, rounds = 5, opt, ep, fifo;
	long pid = 0, threads = -1, rss_before = -1, rss_blocked = -1;
	const char *fifo_path = NULL;
	double last[ROUNDS_MAX], p50[ROUNDS_MAX];
	long answered = 0, stale = 0;
	struct caller *callers;
	char *colon;

	while ((opt = getopt(argc, argv, "H:s:n:f:r:p:")) != -1) {
		switch (opt) {
		case 'H':
			snprintf(host_port, sizeof(host_port), "%s", optarg);
			break;
		case 's':
			snprintf(service, sizeof(service), "%s", optarg);
			break;
		case 'n': n = atoi(optarg); break;
		case 'f': fifo_path = optarg; break;
		case 'r': rounds = atoi(optarg); break;
		case 'p': pid = atol(optarg); break;
		default: return 2;
		}
	}
	if (!(colon = strchr(host_port, ':')) || !service[0] || !fifo_path ||
	    n < 1 || rounds < 1 || rounds > ROUNDS_MAX) {
		fprintf(stderr, "usage: blockgen -H HOST:PORT -s SERVICE -n N "
				"-f FIFO [-r ROUNDS] [-p PID]\n");
		return 2;
	}
	server.sin_family = AF_INET;
	server.sin_port = htons((unsigned short)atoi(colon + 1));
	*colon = '\0';
	inet_pton(AF_INET, host_port, &server.sin_addr);
	*colon = ':';
	if ((fifo = open(fifo_path, O_WRONLY)) < 0)
		die(fifo_path);
	if (!(callers = calloc((size_t)n, sizeof(*callers))))
		die("calloc");
	if ((ep = epoll_create1(0)) < 0)
		die("epoll");
	for (int r = 0; r < rounds; r++) {
		unsigned long long index = index_now();
		double t0, *each = malloc(sizeof(double) * (size_t)n);
		char line[32];
		int left = n, got = 0;

		if (pid)
			rss_before = proc_field(pid, "VmRSS:");
		for (int i = 0; i < n; i++) {
			struct caller *c = &callers[i];
			struct epoll_event ev = { .events = EPOLLIN,
						  .data.ptr = c };

			c->fd = dial();
			c->len = 0;
			c->done_ms = 0;
			dprintf(c->fd,
				"GET /api/discovery/services/%s/endpoints?"
				"state=any&index=%llu&wait=10m HTTP/1.1\r\n"
				"Host: %s\r\n\r\n",
				service, index, host_port);
			fcntl(c->fd, F_SETFL, O_NONBLOCK);
			epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
		}
		/* All blocked, or something else moved the index (say the
		 * probe's link was replaced): then the round says so. */
		for (double until = now_ms() + 30000; blocked_now() < n;) {
			if (blocked_now() < 0) {
				fprintf(stderr, "blockgen: no metric\n");
				return 1;
			}
			if (now_ms() > until) {
				fprintf(stderr,
					"blockgen: round %d: %ld of %d blocked "
					"after 30 s: another change woke "
					"them\n",
					r + 1, blocked_now(), n);
				return 1;
			}
			nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
		}
		if (pid) {
			rss_blocked = proc_field(pid, "VmRSS:");
			threads = proc_field(pid, "Threads:");
		}
		snprintf(line, sizeof(line), "load %.2f\n", r % 2 ? 0.2 : 0.7);
		t0 = now_ms();
		if (write(fifo, line, strlen(line)) < 0)
			die("fifo");
		while (left > 0) {
			struct epoll_event evs[256];
			int k = epoll_wait(ep, evs, 256, 30000);

			if (k <= 0) {
				fprintf(stderr,
					"blockgen: %d callers never "
					"answered\n",
					left);
				break;
			}
			for (int e = 0; e < k; e++) {
				struct caller *c = evs[e].data.ptr;
				ssize_t m = read(c->fd, c->buf + c->len,
						 sizeof(c->buf) - 1 - c->len);

				if (m > 0)
					c->len += (size_t)m;
				if (m > 0 && !whole(c))
					continue;
				c->buf[c->len] = '\0';
				c->done_ms = now_ms() - t0;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				c->status = atoi(c->buf + 9);
				if (c->status == 200 &&
				    strtoull(strcasestr(c->buf,
							"\r\nX-Discovery-"
							"Index:") +
						     20,
					     NULL, 10) > index)
					each[got++] = c->done_ms;
				else
					stale++;
				left--;
			}
		}
		answered += got;
		for (int i = 0; i < n; i++)
			close(callers[i].fd);
		last[r] = got ? each[0] : -1;
		for (int i = 0; i < got; i++)
			if (each[i] > last[r])
				last[r] = each[i];
		p50[r] = median(each, got);
		free(each);
		fprintf(stderr,
			"blockgen: round %d: %d answered, last %.2f ms, "
			"p50 %.2f ms\n",
			r + 1, got, last[r], p50[r]);
		/* The next round's index is past this change. */
		while (blocked_now() != 0)
			nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	}
	printf("{\"callers\":%d,\"rounds\":%d,\"answered\":%ld,\"stale\":%ld,"
	       "\"last_ms\":[",
	       n, rounds, answered, stale);
	for (int r = 0; r < rounds; r++)
		printf("%s%.3f", r ? "," : "", last[r]);
	printf("],\"p50_ms\":[");
	for (int r = 0; r < rounds; r++)
		printf("%s%.3f", r ? "," : "", p50[r]);
	printf("],\"last_ms_median\":%.3f,\"p50_ms_median\":%.3f,"
	       "\"server_threads\":%ld,\"bytes_per_blocked\":%ld}\n",
	       median(last, rounds), median(p50, rounds), threads,
	       rss_before >= 0 && rss_blocked >= 0 ?
		       (rss_blocked - rss_before) * 1024 / n :
		       -1);
	return answered == (long)n * rounds ? 0 : 1;
}
