/*
 * test_agent_run: how discovery-agent runs hooks and ready checks
 * (agent/sidecar/run.c) and queues hooks (agent/sidecar/hooks.c).
 *
 * The sidecar's modules are compiled into this test (their functions are
 * file-local). Real /bin/sh children: exit codes and signals, stdin in and
 * output out (capped), the environment, the deadline and the cancel fd
 * killing the whole process group, grandchildren that ignore SIGTERM or
 * keep the output pipe open, no zombie left behind, and the hook queue's
 * bound, the reset that stands in for what it dropped, and shutdown.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../agent/sidecar/run.c"
#include "../../agent/sidecar/hooks.c"

#include <sys/eventfd.h>

static int64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every child was reaped: no zombie of ours. */
static void assert_no_children(void)
{
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static int run(const char *cmd, struct run_result *r)
{
	return run_command(cmd, NULL, 0, NULL, 5000, -1, r);
}

static void test_exit_status(void **state)
{
	struct run_result r;
	char text[64];

	(void)state;
	assert_int_equal(run("exit 0", &r), 0);
	assert_int_equal(r.outcome, RUN_EXITED);
	assert_string_equal(run_describe(&r, text, sizeof(text)), "exit:0");
	assert_int_equal(run("exit 3", &r), -1);
	assert_string_equal(run_describe(&r, text, sizeof(text)), "exit:3");
	assert_int_equal(run("kill -TERM $$", &r), -1);
	assert_int_equal(r.outcome, RUN_SIGNALED);
	assert_string_equal(run_describe(&r, text, sizeof(text)), "signal:15");
	assert_no_children();
}

static void test_output_and_input(void **state)
{
	struct run_result r;
	size_t big = 1024 * 1024;
	char *input = malloc(big);

	(void)state;
	assert_int_equal(run("echo out; echo err >&2", &r), 0);
	assert_string_equal(r.output, "out\nerr\n");
	assert_false(r.truncated);

	assert_int_equal(run_command("cat", "{\"k\":1}", 7, NULL, 5000, -1, &r),
			 0);
	assert_string_equal(r.output, "{\"k\":1}");

	/* More input than a pipe holds, read whole... */
	memset(input, 'x', big);
	assert_int_equal(run_command("wc -c", input, big, NULL, 5000, -1, &r),
			 0);
	assert_int_equal(atol(r.output), (long)big);
	/* ...or not read at all: no hang, no SIGPIPE for us. */
	assert_int_equal(run_command("exit 0", input, big, NULL, 5000, -1, &r),
			 0);
	free(input);

	/* Output past the cap is drained (the child never blocks) and cut. */
	assert_int_equal(run("head -c 100000 /dev/zero | tr '\\0' a", &r), 0);
	assert_int_equal(r.output_len, RUN_OUTPUT_MAX);
	assert_true(r.truncated);
	assert_int_equal(strlen(r.output), RUN_OUTPUT_MAX);
	assert_no_children();
}

static void test_environment(void **state)
{
	static const char *const extra[] = { "DISCOVERY_KIND=invalidate",
					     "DISCOVERY_SEQ=42", NULL };
	struct run_result r;

	(void)state;
	/* Our own DISCOVERY_* do not leak into a hook; the job's do. */
	setenv("DISCOVERY_LEAK", "x", 1);
	setenv("TEST_AGENT_RUN_KEPT", "y", 1);
	assert_int_equal(
		run_command("echo \"${DISCOVERY_LEAK-unset}:$DISCOVERY_KIND:"
			    "$DISCOVERY_SEQ:$TEST_AGENT_RUN_KEPT\"",
			    NULL, 0, extra, 5000, -1, &r),
		0);
	assert_string_equal(r.output, "unset:invalidate:42:y\n");
	unsetenv("DISCOVERY_LEAK");
}

/* The sidecar blocks SIGTERM/SIGINT/SIGHUP and ignores SIGPIPE; a hook
 * must start with neither. */
static void test_child_signals_reset(void **state)
{
	sigset_t block, old;
	struct run_result r;

	(void)state;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	assert_int_equal(run("kill -TERM $$; sleep 2", &r), -1);
	assert_int_equal(r.outcome, RUN_SIGNALED);
	assert_int_equal(r.status, SIGTERM);
	/* yes dies of SIGPIPE once head is done, so the pipeline ends. */
	assert_int_equal(run("yes | head -n 1", &r), 0);
	assert_string_equal(r.output, "y\n");
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	assert_no_children();
}

/* State of a process: 0 if gone (or a zombie waiting for init), else 1. */
static int alive(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static pid_t read_pid(const char *path)
{
	FILE *f = fopen(path, "r");
	int pid = 0;

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	return (pid_t)pid;
}

/*
 * Past the deadline the whole group goes: the shell, and a grandchild that
 * ignores SIGTERM (it once survived, since the shell died at once and only
 * the shell was waited for).
 */
static void test_timeout_kills_group(void **state)
{
	char path[] = "/tmp/test_agent_run_pidXXXXXX", cmd[256];
	struct run_result r;
	int64_t t0 = clock_ms();
	pid_t grandchild;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	snprintf(cmd, sizeof(cmd),
		 "(trap '' TERM; exec sleep 30) & echo $! > %s; sleep 30",
		 path);
	assert_int_equal(run_command(cmd, NULL, 0, NULL, 300, -1, &r), -1);
	assert_int_equal(r.outcome, RUN_TIMEOUT);
	assert_true(clock_ms() - t0 < 300 + KILL_GRACE_MS + 1000);
	grandchild = read_pid(path);
	assert_true(grandchild > 0);
	for (int i = 0; i < 100 && alive(grandchild); i++)
		usleep(10 * 1000);
	assert_false(alive(grandchild));
	unlink(path);
	assert_no_children();

	/* A plain timeout: the shell and sleep die of SIGTERM. */
	t0 = clock_ms();
	assert_int_equal(run_command("sleep 30", NULL, 0, NULL, 200, -1, &r),
			 -1);
	assert_int_equal(r.outcome, RUN_TIMEOUT);
	assert_true(clock_ms() - t0 < 200 + KILL_GRACE_MS + 1000);
	assert_no_children();
}

/* A background process that keeps the output pipe open does not hold up a
 * hook that exited. */
static void test_background_holder(void **state)
{
	struct run_result r;
	int64_t t0 = clock_ms();

	(void)state;
	assert_int_equal(run("sleep 3 & echo done", &r), 0);
	assert_true(clock_ms() - t0 < 1500);
	assert_string_equal(r.output, "done\n");
	assert_no_children();
}

static void test_cancel(void **state)
{
	uint64_t one = 1;
	struct run_result r;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int64_t t0;

	(void)state;
	assert_true(efd >= 0);
	assert_int_equal(run_command("exit 0", NULL, 0, NULL, 5000, efd, &r),
			 0);

	/* Shutdown: the running command is killed at once... */
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	t0 = clock_ms();
	assert_int_equal(run_command("sleep 30", NULL, 0, NULL, 30000, efd, &r),
			 -1);
	assert_int_equal(r.outcome, RUN_CANCELLED);
	assert_true(clock_ms() - t0 < KILL_GRACE_MS + 1000);
	/* ...and once it is asked, nothing is even started. */
	assert_int_equal(run_command("echo started", NULL, 0, NULL, 5000, efd,
				     &r),
			 -1);
	assert_int_equal(r.outcome, RUN_CANCELLED);
	assert_int_equal(r.output_len, 0);
	close(efd);
	assert_no_children();
}

/* ---- hooks --------------------------------------------------------------- */

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static void wait_lines(const char *path, int n)
{
	for (int i = 0; i < 500 && count_lines(path) < n; i++)
		usleep(10 * 1000);
	assert_int_equal(count_lines(path), n);
}

static void submit(struct hooks *h, const char *cmd, uint64_t seq)
{
	struct hook_job job = { .hook = "on_command",
				.command = cmd,
				.input = "{}",
				.kind = "command",
				.seq = seq,
				.service = "web" };

	hooks_submit(h, &job);
}

/* One runs, queue_max wait, the rest are dropped; stopping drops what
 * waits and lets the running one finish. */
static void test_hooks_queue_bound(void **state)
{
	char path[] = "/tmp/test_agent_run_hooksXXXXXX", slow[300], fast[300];
	int fd = mkstemp(path);
	struct hooks_config conf = { .queue_max = 2,
				     .timeout_ms = 5000,
				     .cancel_fd = -1 };
	struct hooks *h = hooks_start(&conf);
	struct hooks_status st;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_non_null(h);
	snprintf(slow, sizeof(slow), "echo \"$DISCOVERY_SEQ\" >> %s; sleep 0.3",
		 path);
	snprintf(fast, sizeof(fast), "echo \"$DISCOVERY_SEQ\" >> %s", path);
	submit(h, slow, 1);
	wait_lines(path, 1); /* running */
	for (uint64_t seq = 2; seq <= 5; seq++)
		submit(h, fast, seq);
	wait_lines(path, 3); /* 2 and 3 ran, 4 and 5 were dropped */
	usleep(100 * 1000);
	assert_int_equal(count_lines(path), 3);
	/* No on_reset: nothing stands in for them, nothing is pending. */
	hooks_status(h, &st);
	assert_false(st.reset_pending);
	assert_int_equal(st.dropped, 2);

	submit(h, slow, 6);
	wait_lines(path, 4);
	submit(h, fast, 7);
	hooks_stop(h); /* 6 finishes; 7 waits, is dropped */
	assert_int_equal(count_lines(path), 4);
	unlink(path);
	assert_no_children();
}

/* At shutdown (cancel fd) the running hook is killed and no queued one
 * is started. */
static void test_hooks_cancel(void **state)
{
	char path[] = "/tmp/test_agent_run_cancelXXXXXX", cmd[300];
	int fd = mkstemp(path), efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct hooks_config conf = { .queue_max = 8,
				     .timeout_ms = 30000,
				     .cancel_fd = efd };
	struct hooks *h = hooks_start(&conf);
	uint64_t one = 1;
	int64_t t0;

	(void)state;
	assert_true(fd >= 0 && efd >= 0);
	close(fd);
	snprintf(cmd, sizeof(cmd), "echo \"$DISCOVERY_SEQ\" >> %s; sleep 30",
		 path);
	submit(h, cmd, 1);
	wait_lines(path, 1);
	submit(h, cmd, 2);
	submit(h, cmd, 3);
	t0 = clock_ms();
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	hooks_stop(h);
	assert_true(clock_ms() - t0 < KILL_GRACE_MS + 1000);
	assert_int_equal(count_lines(path), 1);
	close(efd);
	unlink(path);
	assert_no_children();
}

/* The whole file, NUL-terminated, in buf. */
static const char *slurp(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, size - 1, f) : 0;

	if (f)
		fclose(f);
	buf[n] = '\0';
	return buf;
}

static char *reset_input(const struct hook_reset *r, void *ud)
{
	char *s;

	(void)ud;
	if (asprintf(&s, "%s %llu %zu %d\n", r->reason,
		     (unsigned long long)r->seq, r->dropped, r->resumed) < 0)
		return NULL;
	return s;
}

/* A hook that logs its seq into log, then holds until release exists. */
struct held {
	char dir[40], log[80], release[80], hold[400], reset[400];
};

static void held_init(struct held *t, const char *reset_tail)
{
	strcpy(t->dir, "/tmp/test_agent_run_resetXXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->log, sizeof(t->log), "%s/log", t->dir);
	snprintf(t->release, sizeof(t->release), "%s/release", t->dir);
	snprintf(t->hold, sizeof(t->hold),
		 "echo \"$DISCOVERY_SEQ\" >> %s; "
		 "while [ ! -e %s ]; do sleep 0.01; done",
		 t->log, t->release);
	snprintf(t->reset, sizeof(t->reset),
		 "echo \"$DISCOVERY_KIND:$DISCOVERY_REASON:$DISCOVERY_SEQ:"
		 "$DISCOVERY_SERVICE $(cat)\" >> %s%s",
		 t->log, reset_tail);
}

static void held_release(struct held *t)
{
	FILE *f = fopen(t->release, "w");

	assert_non_null(f);
	fclose(f);
}

static void held_clean(struct held *t)
{
	char cmd[100];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
	assert_int_equal(system(cmd), 0);
}

/* A full queue drops what waits for one reset, which runs next (before
 * what came after), however many overflows came before it started. */
static void test_hooks_overflow_resets(void **state)
{
	struct held t;
	struct hooks_config conf = { .queue_max = 2,
				     .timeout_ms = 5000,
				     .cancel_fd = -1,
				     .service = "web",
				     .reset_input = reset_input };
	struct hooks *h;
	struct hooks_status st;
	char text[1000];

	(void)state;
	held_init(&t, "");
	conf.on_reset = t.reset;
	h = hooks_start(&conf);
	assert_non_null(h);
	hooks_status(h, &st);
	assert_true(st.reset_pending); /* until the first link's has run */
	hooks_reset(h, 0, false);
	wait_lines(t.log, 1);
	submit(h, t.hold, 1);
	wait_lines(t.log, 2); /* 1 runs, held */
	for (uint64_t seq = 2; seq <= 7; seq++)
		submit(h, t.hold, seq); /* 2, 3 wait; 4 drops them; ... */
	hooks_status(h, &st);
	assert_true(st.reset_pending);
	assert_int_equal(st.dropped, 6);
	assert_int_equal(st.waiting, 0);
	submit(h, t.hold, 8); /* after the overflow: behind it */
	held_release(&t);
	wait_lines(t.log, 4);
	assert_string_equal(slurp(t.log, text, sizeof(text)),
			    "reset:link:0:web link 0 0 0\n"
			    "1\n"
			    "reset:overflow:7:web overflow 7 6 0\n"
			    "8\n");
	hooks_status(h, &st);
	assert_false(st.reset_pending);
	hooks_stop(h);
	held_clean(&t);
	assert_no_children();
}

/* A link reset supersedes what waits; a failed reset is tried again, and
 * stays pending until then, with what came after it waiting. */
static void test_hooks_reset_retried(void **state)
{
	struct held t;
	struct hooks_config conf = { .queue_max = 8,
				     .timeout_ms = 5000,
				     .cancel_fd = -1,
				     .service = "web",
				     .reset_input = reset_input };
	struct hooks *h;
	struct hooks_status st;
	char text[1000], fail[500];
	int64_t t0;

	(void)state;
	held_init(&t, "; [ -e failed ] || { touch failed; exit 1; }");
	snprintf(fail, sizeof(fail), "cd %s && %s", t.dir, t.reset);
	conf.on_reset = fail;
	h = hooks_start(&conf);
	assert_non_null(h);
	submit(h, t.hold, 1);
	wait_lines(t.log, 1);
	submit(h, t.hold, 2);
	submit(h, t.hold, 3);
	hooks_reset(h, 3, true); /* 2 and 3 are superseded */
	submit(h, t.hold, 4);
	t0 = clock_ms();
	held_release(&t);
	wait_lines(t.log, 2); /* the reset, which fails */
	hooks_status(h, &st);
	assert_true(st.reset_pending);
	assert_int_equal(st.dropped, 2);
	wait_lines(t.log, 4); /* tried again, then 4 */
	/* A lower bound, which no load can break: the retry waited. */
	assert_true(clock_ms() - t0 >= HOOKS_RETRY_FIRST_MS);
	assert_string_equal(slurp(t.log, text, sizeof(text)),
			    "1\n"
			    "reset:link:3:web link 3 2 1\n"
			    "reset:link:3:web link 3 2 1\n"
			    "4\n");
	hooks_status(h, &st);
	assert_false(st.reset_pending);
	hooks_stop(h);
	held_clean(&t);
	assert_no_children();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exit_status),
		cmocka_unit_test(test_output_and_input),
		cmocka_unit_test(test_environment),
		cmocka_unit_test(test_child_signals_reset),
		cmocka_unit_test(test_timeout_kills_group),
		cmocka_unit_test(test_background_holder),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_hooks_queue_bound),
		cmocka_unit_test(test_hooks_cancel),
		cmocka_unit_test(test_hooks_overflow_resets),
		cmocka_unit_test(test_hooks_reset_retried),
	};

	log_init("test_agent_run", LOG_ERROR);
	/* As in the sidecar (main.c): a hook that exits without reading its
	 * stdin must cost us an EPIPE, not the process. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
