/*
 * example: a program written only against the names man libagent fixes, built
 * by tests/integration/test_install.py against an installed tree (with
 * `pkg-config --cflags --libs libagent`, shared and static) to prove that
 * what `make install` puts there is enough to build and run a client, and
 * by tests/integration/test_deb.py against the installed libagent-dev.
 *
 *   example AGENT_YAML DEPENDENCY [SECONDS]
 *
 * It loads the agent from AGENT_YAML, starts it, reports this instance
 * ready, says "waiting" on stdout, then waits (a bounded loop of short
 * sleeps, at most SECONDS, default 15) until every dependency is ready,
 * prints "ready DEPENDENCY=1" and exits 0. Exit 1: the file does not load;
 * 2: the agent does not start; 3: not ready in time.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <discovery/agent.h>

#define STEP_NS 10000000L /* 10 ms */

int main(int argc, char **argv)
{
	const struct timespec step = { 0, STEP_NS };
	char err[512];
	long steps, seconds;
	agent_t *a;
	int rc;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: %s AGENT_YAML DEPENDENCY [SECONDS]\n",
			argv[0]);
		return 64;
	}
	seconds = argc == 4 ? strtol(argv[3], NULL, 10) : 15;
	if (seconds < 1)
		seconds = 1;

	a = agent_load(argv[1], err, sizeof(err));
	if (!a) {
		fprintf(stderr, "agent_load: %s\n", err);
		return 1;
	}
	rc = agent_start(a);
	if (rc != 0) {
		fprintf(stderr, "agent_start: %s\n", agent_strerror(rc));
		agent_destroy(a);
		return 2;
	}
	rc = agent_set_ready(a, true);
	if (rc != 0) {
		fprintf(stderr, "agent_set_ready: %s\n", agent_strerror(rc));
		agent_destroy(a);
		return 2;
	}
	printf("waiting %s=%d\n", argv[2], agent_is_ready(a, argv[2]));
	fflush(stdout);

	steps = seconds * (1000000000L / STEP_NS);
	while (!agent_all_ready(a) && steps-- > 0)
		nanosleep(&step, NULL);
	if (!agent_all_ready(a)) {
		fprintf(stderr, "not ready after %ld s\n", seconds);
		agent_destroy(a);
		return 3;
	}
	printf("ready %s=%d\n", argv[2], agent_is_ready(a, argv[2]));
	fflush(stdout);
	agent_destroy(a);
	return 0;
}
