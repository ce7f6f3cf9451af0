/*
 * run: one shell command with a deadline (see run.h).
 *
 * posix_spawn gives the child a fresh process group, the default signal
 * dispositions and an empty signal mask (the sidecar blocks SIGTERM/SIGINT/
 * SIGHUP for sigwait and ignores SIGPIPE; a hook must not inherit that), and
 * closes every descriptor above stderr. The parent then polls the pidfd, the
 * output pipe, the input pipe and the cancel fd until the child is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "run.h"

#define KILL_GRACE_MS 1000 /* SIGTERM first, SIGKILL this much later */
#define ENV_PREFIX    "DISCOVERY_"
/* Reads per capture() call: a child that writes as fast as we read must not
 * keep us from the deadline, the cancel fd or its exit. */
#define CAPTURE_READS 16

extern char **environ;

/* Our environment without DISCOVERY_*, then `extra`. Caller frees the array. */
static char **build_env(const char *const *extra)
{
	size_t n = 0, k = 0, m = 0;
	char **env;

	while (environ[n])
		n++;
	while (extra && extra[m])
		m++;
	env = calloc(n + m + 1, sizeof(char *));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], ENV_PREFIX, strlen(ENV_PREFIX)))
			env[k++] = environ[i];
	for (size_t i = 0; i < m; i++)
		env[k++] = (char *)extra[i];
	return env;
}

static pid_t spawn(const char *command, char **env, int in_fd, int out_fd)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	char *argv[] = { (char *)"sh", (char *)"-c", (char *)command, NULL };
	pid_t pid = -1;
	int rc;

	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
						POSIX_SPAWN_SETSIGMASK |
						POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc) {
		errno = rc;
		return -1;
	}
	return pid;
}

static void capture(int *fd, struct run_result *r)
{
	char buf[4096];
	ssize_t n;

	for (int reads = 0; reads < CAPTURE_READS; reads++) {
		n = read(*fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || errno != EAGAIN) {
				close(*fd);
				*fd = -1;
			}
			return;
		}
		size_t room = RUN_OUTPUT_MAX - r->output_len;
		size_t take = (size_t)n < room ? (size_t)n : room;

		memcpy(r->output + r->output_len, buf, take);
		r->output_len += take;
		r->truncated |= take < (size_t)n;
	}
}

/*
 * Kill the whole group: SIGTERM, then SIGKILL to whatever is left of it
 * KILL_GRACE_MS later. The shell often dies at once while a member that
 * ignores SIGTERM lives on, so we wait for the group, not just the leader.
 * The group's id stays reserved while any member lives (Linux does not
 * reuse a pid still in use as a process group id), so signalling -pid after
 * the leader is reaped reaches only our group; once kill(-pid, 0) fails the
 * group is gone and we stop. (An orphaned member that died counts until
 * init reaps it: at worst we wait out the grace.) The leader is always
 * reaped: no zombie of ours.
 */
static void kill_group(pid_t pid, int pidfd, int *status)
{
	int64_t deadline = clock_mono_ms() + KILL_GRACE_MS, left;
	bool reaped = false;

	kill(-pid, SIGTERM);
	while ((left = deadline - clock_mono_ms()) > 0) {
		if (!reaped && waitpid(pid, status, WNOHANG) == pid)
			reaped = true;
		if (reaped && kill(-pid, 0) < 0)
			return; /* every member is gone */
		if (!reaped && pidfd >= 0) {
			struct pollfd p = { pidfd, POLLIN, 0 };

			poll(&p, 1, (int)left);
		} else {
			usleep(10 * 1000);
		}
	}
	if (!reaped || kill(-pid, 0) == 0)
		kill(-pid, SIGKILL);
	if (!reaped)
		while (waitpid(pid, status, 0) < 0 && errno == EINTR)
			;
}

/* Shutdown already asked: do not start anything. */
static bool cancelled(int cancel_fd)
{
	struct pollfd p = { cancel_fd, POLLIN, 0 };

	return cancel_fd >= 0 && poll(&p, 1, 0) > 0;
}

static void set_exit(struct run_result *r, int status)
{
	if (WIFSIGNALED(status)) {
		r->outcome = RUN_SIGNALED;
		r->status = WTERMSIG(status);
	} else {
		r->outcome = RUN_EXITED;
		r->status = WEXITSTATUS(status);
	}
}

/* A running child and the parent's ends of its pipes (-1 once closed). */
struct child {
	pid_t pid;
	int pidfd; /* -1: no pidfd_open (old kernel, valgrind) */
	int in_fd, out_fd;
	const char *input;
	size_t input_len, sent;
};

static void feed(struct child *c)
{
	ssize_t w = c->sent < c->input_len ? write(c->in_fd, c->input + c->sent,
						   c->input_len - c->sent) :
					     0;

	if (w > 0)
		c->sent += (size_t)w;
	/* All sent, or the child stopped reading (EPIPE): EOF for it. */
	if (c->sent >= c->input_len || (w < 0 && errno != EAGAIN)) {
		close(c->in_fd);
		c->in_fd = -1;
	}
}

/* The poll loop: feed stdin, collect output, until exit, deadline or cancel. */
static void watch(struct child *c, int64_t deadline, int cancel_fd,
		  struct run_result *r)
{
	int status = 0;

	for (;;) {
		struct pollfd p[4] = {
			{ c->pidfd, POLLIN, 0 },
			{ c->out_fd, POLLIN, 0 },
			{ c->in_fd, POLLOUT, 0 },
			{ cancel_fd, POLLIN, 0 },
		}; /* poll skips negative fds */
		int64_t left = deadline - clock_mono_ms();

		if (left <= 0) {
			kill_group(c->pid, c->pidfd, &status);
			r->outcome = RUN_TIMEOUT;
			return;
		}
		/* Without a pidfd, look at the child every 50ms. */
		if (c->pidfd < 0 && left > 50)
			left = 50;
		if (poll(p, 4, (int)left) < 0 && errno != EINTR)
			usleep(10 * 1000); /* never spin on a failing poll */
		if (p[3].revents) {
			kill_group(c->pid, c->pidfd, &status);
			r->outcome = RUN_CANCELLED;
			return;
		}
		if (p[1].revents)
			capture(&c->out_fd, r);
		if (p[2].revents)
			feed(c);
		if ((p[0].revents || c->pidfd < 0) &&
		    waitpid(c->pid, &status, c->pidfd >= 0 ? 0 : WNOHANG) ==
			    c->pid) {
			set_exit(r, status);
			return;
		}
	}
}

int run_command(const char *command, const char *input, size_t input_len,
		const char *const *env, int64_t timeout_ms, int cancel_fd,
		struct run_result *r)
{
	int64_t start = clock_mono_ms();
	int in[2] = { -1, -1 }, out[2] = { -1, -1 };
	char **envp = NULL;
	struct child c = { .pid = -1, .input = input, .input_len = input_len };

	memset(r, 0, sizeof(*r));
	if (cancelled(cancel_fd)) {
		r->outcome = RUN_CANCELLED;
		return -1;
	}
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) ||
	    !(envp = build_env(env)) ||
	    (c.pid = spawn(command, envp, in[0], out[1])) < 0) {
		r->outcome = RUN_FAILED;
		r->status = errno ? errno : ENOMEM;
		for (int i = 0; i < 2; i++) {
			if (in[i] >= 0)
				close(in[i]);
			if (out[i] >= 0)
				close(out[i]);
		}
		free(envp);
		return -1;
	}
	free(envp);
	close(in[0]);
	close(out[1]);
	c.in_fd = in[1];
	c.out_fd = out[0];
	fcntl(c.in_fd, F_SETFL, O_NONBLOCK);
	fcntl(c.out_fd, F_SETFL, O_NONBLOCK);
	c.pidfd = (int)syscall(SYS_pidfd_open, c.pid, 0);
	if (!(input && input_len)) {
		close(c.in_fd); /* the child reads EOF at once */
		c.in_fd = -1;
	}

	watch(&c, start + timeout_ms, cancel_fd, r);
	if (c.out_fd >= 0) {
		capture(&c.out_fd, r); /* what is already there; never wait */
		if (c.out_fd >= 0)
			close(c.out_fd);
	}
	if (c.in_fd >= 0)
		close(c.in_fd);
	if (c.pidfd >= 0)
		close(c.pidfd);
	r->output[r->output_len] = '\0';
	r->elapsed_ms = clock_mono_ms() - start;
	return r->outcome == RUN_EXITED && r->status == 0 ? 0 : -1;
}

const char *run_describe(const struct run_result *r, char *buf, size_t size)
{
	switch (r->outcome) {
	case RUN_EXITED: snprintf(buf, size, "exit:%d", r->status); break;
	case RUN_SIGNALED: snprintf(buf, size, "signal:%d", r->status); break;
	case RUN_TIMEOUT: snprintf(buf, size, "timeout"); break;
	case RUN_CANCELLED: snprintf(buf, size, "cancelled"); break;
	default: snprintf(buf, size, "error:%s", strerror(r->status)); break;
	}
	return buf;
}
