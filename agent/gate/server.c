/*
 * server: listeners and workers (see server.h).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
#include "worker.h"

#define BACKLOG 1024

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static uint16_t get_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return 0;
	return ntohs(ss.ss_family == AF_INET6 ?
			     ((struct sockaddr_in6 *)&ss)->sin6_port :
			     ((struct sockaddr_in *)&ss)->sin_port);
}

/* A non-blocking listener on ss, sharing the port with the others. */
static int listen_on(const struct sockaddr_storage *ss)
{
	int one = 1, fd = socket(ss->ss_family,
				 SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	socklen_t len = ss->ss_family == AF_INET6 ?
				sizeof(struct sockaddr_in6) :
				sizeof(struct sockaddr_in);

	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)ss, len) || listen(fd, BACKLOG)) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* One listener and one worker per thread; the first binds the port (the
 * kernel's pick for port 0), the others join it. */
static int start_workers(struct gate_server *s, struct sockaddr_storage *ss,
			 char *err, size_t errlen)
{
	s->workers = calloc(s->n_workers, sizeof(*s->workers));
	if (!s->workers) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->env.workers = s->workers;
	for (size_t i = 0; i < s->n_workers; i++) {
		int fd = listen_on(ss);
		char text[CONF_ADDR_TEXT];

		if (fd < 0) {
			snprintf(err, errlen, "listen: cannot listen on %s: %s",
				 conf_addr_format(&s->env.conf->listen, text,
						  sizeof(text)),
				 strerror(errno));
			return -1;
		}
		if (!i) {
			s->port = get_port(fd);
			set_port(ss, s->port);
		}
		s->workers[i] = worker_start(&s->env, fd, err, errlen);
		if (!s->workers[i])
			return -1;
		/* Now the others may hand it connections. */
		atomic_store_explicit(&s->env.n_workers, i + 1,
				      memory_order_release);
	}
	return 0;
}

struct gate_server *server_start(const struct gconf *c, struct gate_state *st,
				 char *err, size_t errlen)
{
	struct gate_server *s = calloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	struct conf_addr bound = c->listen;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads = c->threads ? (unsigned)c->threads :
			   cores > 0  ? (unsigned)cores :
					1;
	char text[CONF_ADDR_TEXT];

	memset(&ss, 0, sizeof(ss));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->env.conf = c;
	s->env.state = st;
	s->env.fwd = (struct forward_conf){
		.prefix = c->upstream_prefix,
		.authority = c->upstream_authority,
		.via = "1.1 discovery-gate",
		.trust_forwarded = c->trust_forwarded,
	};
	atomic_init(&s->env.busy, 0);
	atomic_init(&s->env.n_workers, 0);
	s->n_workers = threads;
	s->env.admit =
		admit_new((size_t)c->max_connections, (size_t)c->max_per_ip);
	if (!s->env.admit) {
		snprintf(err, errlen, "out of memory");
		free(s);
		return NULL;
	}
	if (conf_addr_resolve(&c->listen, "listen", &ss, err, errlen) ||
	    start_workers(s, &ss, err, errlen)) {
		server_stop(s);
		return NULL;
	}
	bound.port = s->port;
	log_info("listening", "listener=http addr=%s threads=%u",
		 conf_addr_format(&bound, text, sizeof(text)), threads);
	return s;
}

int server_drain(struct gate_server *s, long long timeout_ms)
{
	struct timespec step = { 0, 20 * 1000 * 1000 };
	int left;

	for (size_t i = 0; i < s->n_workers; i++)
		if (s->workers[i])
			worker_drain(s->workers[i]);
	/* A daemon's own wait for its clients, not a test's sleep. */
	for (long long waited = 0;
	     (left = atomic_load(&s->env.busy)) > 0 && waited < timeout_ms;
	     waited += 20)
		nanosleep(&step, NULL);
	return left;
}

void server_stop(struct gate_server *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->workers && i < s->n_workers; i++)
		worker_stop(s->workers[i]);
	for (size_t i = 0; s->workers && i < s->n_workers; i++)
		worker_free(s->workers[i]);
	free(s->workers);
	admit_free(s->env.admit);
	free(s);
}
