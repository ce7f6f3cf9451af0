/*
 * cmd: discoveryctl's commands. main.c parses the command line into a
 * struct cmd_args; a command's build function checks those arguments and
 * turns them into one HTTP request (method, path, JSON body, how to show the
 * answer); cmd_run sends it and maps the answer to output and an exit code.
 *
 * Splitting build from run is what guarantees the contract "usage errors are
 * found before any request": a build function has no client to send with.
 */
#ifndef DISCOVERYCTL_CMD_H
#define DISCOVERYCTL_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "render.h"

/* Everything the command line said; strings point into argv. */
struct cmd_args {
	/* global options */
	const char *server;
	const char *token;
	const char *token_file;
	const char *cacert;
	const char *timeout;
	const char *idempotency_key;
	bool json;
	bool help;
	bool version;
	/* command options (NULL: not given) */
	const char *ttl;
	const char *service;
	const char *instance;
	const char *command;
	const char *value;
	const char *after;
	bool follow;             /* events --follow */
	bool watch;              /* endpoints --watch */
	const char *role;        /* token issue */
	const char *secret_file; /* token issue */
	const char *sub;         /* token issue */
	/* webhooks put (--secret-file too) */
	const char *url;
	const char *ca_file;
	const char *kinds;    /* a,b,... */
	const char *services; /* a,b,... */
	const char *max_in_flight;
	const char *file; /* JSON or YAML; "-": stdin */
	bool start_now;
	const char **headers; /* --header K=V, in order */
	size_t nheaders;
	const char **positional; /* arguments after the command word */
	size_t npositional;
};

/* One HTTP request, ready to send. */
struct cmd_request {
	const char *method;
	char *path; /* owned */
	char *body; /* owned JSON text, or NULL for no body */
	enum render_kind render;
};

/* How to reach the server and how to print; resolved by main.c. */
struct cmd_settings {
	const char *base_url;
	const char *token; /* NULL: no Authorization header */
	long timeout_ms;
	const char *cacert; /* NULL: the system's CA store */
	/* A write's Idempotency-Key; NULL: a fresh random one per write. */
	const char *idempotency_key;
	bool json;  /* print the body as is, one line */
	bool color; /* ANSI colours in tables */
};

/*
 * Build functions: check args (exiting with CTL_EXIT_USAGE and a message
 * when they are wrong) and fill req.
 */
typedef void (*cmd_build_fn)(const struct cmd_args *args,
			     struct cmd_request *req);

void cmd_ready(const struct cmd_args *args, struct cmd_request *req);
void cmd_notready(const struct cmd_args *args, struct cmd_request *req);
void cmd_auto(const struct cmd_args *args, struct cmd_request *req);
void cmd_invalidate(const struct cmd_args *args, struct cmd_request *req);
void cmd_broadcast(const struct cmd_args *args, struct cmd_request *req);
void cmd_services(const struct cmd_args *args, struct cmd_request *req);
void cmd_service(const struct cmd_args *args, struct cmd_request *req);
void cmd_agents(const struct cmd_args *args, struct cmd_request *req);
void cmd_endpoints(const struct cmd_args *args, struct cmd_request *req);
void cmd_cacheready(const struct cmd_args *args, struct cmd_request *req);
void cmd_events(const struct cmd_args *args, struct cmd_request *req);
void cmd_drain(const struct cmd_args *args, struct cmd_request *req);
void cmd_webhooks(const struct cmd_args *args, struct cmd_request *req);
/* webhook_body.c: the JSON body of `webhooks put` (malloc'd). */
char *webhook_put_body(const struct cmd_args *args);

/* Send req and print the answer. Returns the process exit code. */
int cmd_run(const struct cmd_settings *settings, const struct cmd_request *req);

/* follow.c: events --follow; runs until interrupted or refused. */
int follow_events(const struct cmd_settings *settings, const char *path);
/* watch.c: endpoints --watch (path: the plain query, with a '?'); the
 * same. */
int watch_endpoints(const struct cmd_settings *settings, const char *path);

void cmd_request_release(struct cmd_request *req);

/* True when name is a valid service name: [a-z0-9][a-z0-9_.-]{0,62}. */
bool cmd_valid_service(const char *name);

#endif
