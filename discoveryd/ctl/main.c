/*
 * discoveryctl: the command-line client of discoveryd's HTTP API, in the
 * spirit of `consul catalog` and `consul event`.
 *
 * This file owns the command line: the option and command tables, parsing
 * argv into a struct cmd_args, the usage text, and resolving where the
 * server is, which token to send and how to print. Everything is checked
 * before the one request is sent (cmd.c), so a usage error always exits 2
 * with nothing sent. `token issue` needs no server: it is a local command
 * (issue.c) and none of the server's settings are resolved for it.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cJSON.h>

#include "client.h"
#include "cmd.h"
#include "conf.h"
#include "issue.h"
#include "util.h"

#ifndef DISCOVERY_VERSION
#define DISCOVERY_VERSION "0.0.0"
#endif

#define DEFAULT_SERVER  "http://127.0.0.1:5916"
#define DEFAULT_TIMEOUT "5s"
/* A token is a JWT of a few hundred bytes; a bigger file is a mistake. */
#define TOKEN_FILE_MAX 65536

enum option_kind {
	OPTION_STRING, /* a const char * field of struct cmd_args */
	OPTION_FLAG,   /* a bool field */
	OPTION_LIST,   /* --header: appended to args->headers */
};

/* Options a command accepts, as bits of struct command.options. */
enum {
	ALLOW_TTL = 1u << 0,
	ALLOW_SERVICE = 1u << 1,
	ALLOW_INSTANCE = 1u << 2,
	ALLOW_COMMAND = 1u << 3,
	ALLOW_HEADER = 1u << 4,
	ALLOW_VALUE = 1u << 5,
	ALLOW_AFTER = 1u << 6,
	ALLOW_ROLE = 1u << 7,
	ALLOW_SECRET_FILE = 1u << 8,
	ALLOW_SUB = 1u << 9,
	ALLOW_FOLLOW = 1u << 10,
	ALLOW_WATCH = 1u << 11,
	ALLOW_WEBHOOK = 1u << 12, /* webhooks put */
	GLOBAL = 1u << 15, /* valid anywhere, before or after the command */
};

struct option {
	const char *name; /* long name, without "--" */
	char short_name;  /* 0: none */
	enum option_kind kind;
	unsigned scope; /* GLOBAL, or the ALLOW_ bit commands must have */
	size_t field;   /* offset in struct cmd_args */
};

#define FIELD(name) offsetof(struct cmd_args, name)

/* clang-format off */
static const struct option options[] = {
	{"server", 's', OPTION_STRING, GLOBAL, FIELD(server)},
	{"token", 0, OPTION_STRING, GLOBAL, FIELD(token)},
	{"token-file", 0, OPTION_STRING, GLOBAL, FIELD(token_file)},
	{"cacert", 0, OPTION_STRING, GLOBAL, FIELD(cacert)},
	{"timeout", 0, OPTION_STRING, GLOBAL, FIELD(timeout)},
	{"idempotency-key", 0, OPTION_STRING, GLOBAL, FIELD(idempotency_key)},
	{"json", 0, OPTION_FLAG, GLOBAL, FIELD(json)},
	{"help", 'h', OPTION_FLAG, GLOBAL, FIELD(help)},
	{"version", 'V', OPTION_FLAG, GLOBAL, FIELD(version)},
	{"ttl", 0, OPTION_STRING, ALLOW_TTL, FIELD(ttl)},
	{"follow", 'f', OPTION_FLAG, ALLOW_FOLLOW, FIELD(follow)},
	{"watch", 'w', OPTION_FLAG, ALLOW_WATCH, FIELD(watch)},
	{"service", 0, OPTION_STRING, ALLOW_SERVICE, FIELD(service)},
	{"instance", 0, OPTION_STRING, ALLOW_INSTANCE, FIELD(instance)},
	{"command", 0, OPTION_STRING, ALLOW_COMMAND, FIELD(command)},
	{"header", 0, OPTION_LIST, ALLOW_HEADER, FIELD(headers)},
	{"value", 0, OPTION_STRING, ALLOW_VALUE, FIELD(value)},
	{"after", 0, OPTION_STRING, ALLOW_AFTER, FIELD(after)},
	{"role", 0, OPTION_STRING, ALLOW_ROLE, FIELD(role)},
	{"secret-file", 0, OPTION_STRING, ALLOW_SECRET_FILE, FIELD(secret_file)},
	{"sub", 0, OPTION_STRING, ALLOW_SUB, FIELD(sub)},
	{"url", 0, OPTION_STRING, ALLOW_WEBHOOK, FIELD(url)},
	{"ca-file", 0, OPTION_STRING, ALLOW_WEBHOOK, FIELD(ca_file)},
	{"kinds", 0, OPTION_STRING, ALLOW_WEBHOOK, FIELD(kinds)},
	{"services", 0, OPTION_STRING, ALLOW_WEBHOOK, FIELD(services)},
	{"max-in-flight", 0, OPTION_STRING, ALLOW_WEBHOOK, FIELD(max_in_flight)},
	{"file", 0, OPTION_STRING, ALLOW_WEBHOOK, FIELD(file)},
	{"start-now", 0, OPTION_FLAG, ALLOW_WEBHOOK, FIELD(start_now)},
	{NULL, 0, OPTION_FLAG, 0, 0},
};
/* clang-format on */

/* A command answered here, with no request: returns the exit code. */
typedef int (*local_fn)(const struct cmd_args *args);

struct command {
	const char *name;
	cmd_build_fn build; /* one request to the server; or NULL and: */
	local_fn local;     /* answered here; both NULL: help and version */
	unsigned options;   /* ALLOW_ bits */
	size_t min_args;
	size_t max_args; /* SIZE_MAX: no limit */
	const char *synopsis;
};

/* clang-format off */
static const struct command commands[] = {
	{"ready", cmd_ready, NULL, ALLOW_TTL, 1, 1,
	 "ready SERVICE [--ttl DURATION]"},
	{"notready", cmd_notready, NULL, 0, 1, 1, "notready SERVICE"},
	{"auto", cmd_auto, NULL, 0, 1, 1, "auto SERVICE"},
	{"invalidate", cmd_invalidate, NULL, ALLOW_SERVICE, 1, SIZE_MAX,
	 "invalidate [--service S] KEY..."},
	{"broadcast", cmd_broadcast, NULL,
	 ALLOW_SERVICE | ALLOW_INSTANCE | ALLOW_COMMAND | ALLOW_HEADER |
		 ALLOW_VALUE,
	 0, 0, "broadcast --command C [--service S] [--instance I] ..."},
	{"services", cmd_services, NULL, 0, 0, 0, "services"},
	{"service", cmd_service, NULL, 0, 1, 1, "service NAME"},
	{"agents", cmd_agents, NULL, 0, 0, 0, "agents"},
	{"endpoints", cmd_endpoints, NULL, ALLOW_WATCH, 1, 1,
	 "endpoints SERVICE [--watch]"},
	{"cacheready", cmd_cacheready, NULL, 0, 0, 0, "cacheready"},
	{"events", cmd_events, NULL, ALLOW_AFTER | ALLOW_FOLLOW, 0, 0,
	 "events [--after SEQ] [--follow]"},
	{"drain", cmd_drain, NULL, 0, 1, 1, "drain NODE"},
	{"webhooks", cmd_webhooks, NULL, ALLOW_WEBHOOK | ALLOW_SECRET_FILE, 0, 3,
	 "webhooks [list | test NAME | replay NAME SEQ | enable NAME | "
	 "delete NAME | put NAME ...]"},
	{"token", NULL, issue_run,
	 ALLOW_ROLE | ALLOW_SERVICE | ALLOW_TTL | ALLOW_SUB |
		 ALLOW_SECRET_FILE,
	 1, 1,
	 "token issue --role agent|admin|reader [--service S] [--ttl 24h] "
	 "[--sub TEXT] --secret-file FILE"},
	{"version", NULL, NULL, 0, 0, 0, "version"},
	{"help", NULL, NULL, 0, 0, SIZE_MAX, "help"},
	{NULL, NULL, NULL, 0, 0, 0, NULL},
};
/* clang-format on */

static const char usage_text[] =
	"Usage: " CTL_PROG " [OPTIONS] COMMAND [ARGUMENTS]\n"
	"\n"
	"Command-line client of the discoveryd HTTP API.\n"
	"\n"
	"Commands:\n"
	"  ready SERVICE [--ttl DURATION]\n"
	"                        declare SERVICE ready (for DURATION: 30s, "
	"5m)\n"
	"  notready SERVICE      declare SERVICE not ready (maintenance)\n"
	"  auto SERVICE          drop the declaration: readiness comes from\n"
	"                        the instances again\n"
	"  invalidate [--service S] KEY...\n"
	"                        tell agents (of S, else all) to drop KEYs\n"
	"  broadcast --command C [--service S] [--instance I]\n"
	"            [--header K=V]... [--value JSON]\n"
	"                        send a custom command to agents (of S or\n"
	"                        instance I, else all)\n"
	"  services              list services and their readiness\n"
	"  service NAME          show one service\n"
	"  agents                list connected agents\n"
	"  endpoints SERVICE [--watch]\n"
	"                        list SERVICE's endpoints, on every node, "
	"ready\n"
	"                        or not; --watch (-w): then print each new "
	"set\n"
	"                        as it changes (blocking queries), until\n"
	"                        interrupted\n"
	"  cacheready            declare service \"cache\" ready "
	"(NetCoreStack\n"
	"                        compatible)\n"
	"  events [--after SEQ] [--follow]\n"
	"                        list retained events (after SEQ); --follow "
	"(-f):\n"
	"                        then stream new ones as they come (SSE), "
	"until\n"
	"                        interrupted, picking up where it was after a "
	"drop\n"
	"  drain NODE            take NODE out of service (a rolling upgrade): "
	"it\n"
	"                        closes its links in steps so that their "
	"agents\n"
	"                        move to other nodes, and refuses new ones; "
	"in\n"
	"                        cluster mode any node passes it on to NODE\n"
	"  webhooks [list]       list the webhook endpoints: cursor, lag, "
	"state\n"
	"  webhooks test NAME    post a test notice to NAME now (its cursor\n"
	"                        stays); fails unless it answers 2xx\n"
	"  webhooks replay NAME SEQ\n"
	"                        send NAME the events from SEQ on again\n"
	"  webhooks enable NAME  deliver to NAME again (after a 410 or\n"
	"                        retry.max_age), from its cursor\n"
	"  webhooks delete NAME  stop delivering to NAME: for good if the API\n"
	"                        defined it, until a restart if the config "
	"did\n"
	"  webhooks put NAME [--file FILE] [--url URL] [--secret-file FILE]\n"
	"              [--ca-file FILE] [--kinds K,...] [--services S,...]\n"
	"              [--max-in-flight N] [--start-now]\n"
	"                        create or replace the run-time endpoint "
	"NAME;\n"
	"                        FILE (JSON or YAML, - for stdin) holds its\n"
	"                        keys as in discoveryd.yaml, the flags set\n"
	"                        theirs over it; a replace goes on from the\n"
	"                        cursor unless --start-now\n"
	"  token issue --role agent|admin|reader [--service S] [--ttl "
	"DURATION]\n"
	"              [--sub TEXT] --secret-file FILE\n"
	"                        print a token signed with FILE (the daemon's\n"
	"                        auth.secret_file); needs no server. "
	"--service\n"
	"                        is required for agent (the only service it\n"
	"                        may register as) and refused for admin and\n"
	"                        reader (they cover every service). --ttl:\n"
	"                        lifetime, default " ISSUE_DEFAULT_TTL
	" (at most 87840h;\n"
	"                        the daemon allows 60s of clock skew past "
	"it).\n"
	"                        --sub: who holds it, logged by the daemon\n"
	"                        (up to 127 printable bytes). FILE must not "
	"be\n"
	"                        readable by others (chmod 600 or 640)\n"
	"  version               print the version\n"
	"  help                  print this help\n"
	"\n"
	"Options (before or after the command):\n"
	"  -s, --server URL      discoveryd's HTTP API; default "
	"$DISCOVERY_ADDR,\n"
	"                        else " DEFAULT_SERVER "\n"
	"      --token TOKEN     bearer token; default $DISCOVERY_TOKEN\n"
	"      --token-file FILE read the token from FILE (keeps it out of "
	"ps)\n"
	"      --cacert FILE     verify an https server against this CA "
	"(PEM);\n"
	"                        default $DISCOVERY_CACERT, else the system "
	"store\n"
	"      --json            print the server's JSON answer, on one line\n"
	"      --timeout DURATION\n"
	"                        give up after DURATION "
	"(default " DEFAULT_TIMEOUT ")\n"
	"      --idempotency-key KEY\n"
	"                        send KEY (1 to 255 visible ASCII characters) "
	"as\n"
	"                        the write's Idempotency-Key instead of a "
	"fresh\n"
	"                        random one: the same KEY again, within the\n"
	"                        daemon's idempotency.retention, gets the "
	"first\n"
	"                        answer and changes nothing\n"
	"  -h, --help            print this help\n"
	"  -V, --version         print the version\n"
	"\n"
	"A --header value is sent as a JSON number, true, false or null when "
	"it\n"
	"is one, else as a string (quote it, K='\"1\"', to force a string).\n"
	"Output is a table (coloured on a terminal unless NO_COLOR is set).\n"
	"ready, notready and auto show the service as it now is; invalidate,\n"
	"broadcast and cacheready show the event's SEQ and how many agents it\n"
	"was DELIVERED to.\n"
	"\n"
	"Every write carries an Idempotency-Key and is tried again, up to 7\n"
	"times in all, with the same key when no answer came or the answer "
	"was\n"
	"503 or 409: the daemon makes the change once.\n"
	"\n"
	"Exit status:\n"
	"  0  success\n"
	"  1  the server refused the request (HTTP 4xx other than 404:\n"
	"     bad field, bad or missing token, no right, body too large);\n"
	"     token issue: the secret file cannot be read or is unsafe\n"
	"  2  usage error: bad options or arguments; nothing was sent\n"
	"  3  cannot reach the server, timeout, HTTP 5xx (503: the change "
	"could\n"
	"     not be made durable, nothing was applied) or an unusable answer\n"
	"  4  not found (HTTP 404): unknown service, or a route this\n"
	"     discoveryd does not have\n";

static const struct command *find_command(const char *name)
{
	for (const struct command *c = commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static const struct option *find_option(const char *name, size_t len,
					char short_name)
{
	for (const struct option *o = options; o->name; o++) {
		if (short_name ? o->short_name == short_name :
				 strlen(o->name) == len &&
					 strncmp(o->name, name, len) == 0)
			return o;
	}
	return NULL;
}

static void store(struct cmd_args *args, const struct option *opt,
		  const char *value)
{
	char *field = (char *)args + opt->field;

	switch (opt->kind) {
	case OPTION_STRING: memcpy(field, &value, sizeof(value)); break;
	case OPTION_FLAG: *(bool *)field = true; break;
	case OPTION_LIST: args->headers[args->nheaders++] = value; break;
	}
}

/*
 * argv[*i] is an option: --name, --name=VALUE, --name VALUE, -x, -x VALUE
 * or -xVALUE. Command options are taken only after a command that has them.
 */
static void parse_option(int argc, char **argv, int *i,
			 const struct command *command, struct cmd_args *args)
{
	const char *arg = argv[*i];
	const char *value = NULL;
	const struct option *opt;

	if (arg[1] == '-') {
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');

		opt = find_option(name, eq ? (size_t)(eq - name) : strlen(name),
				  0);
		value = eq ? eq + 1 : NULL;
	} else {
		opt = find_option(NULL, 0, arg[1]);
		/* -sURL is -s URL; flags are not bundled (-hV is unknown). */
		if (opt && arg[2] && opt->kind != OPTION_STRING)
			opt = NULL;
		else if (opt && arg[2])
			value = arg + 2;
	}
	if (!opt)
		util_usage_error("unknown option '%s'", arg);
	if (!(opt->scope & GLOBAL) && !command)
		util_usage_error("--%s goes after the command", opt->name);
	if (!(opt->scope & GLOBAL) && !(command->options & opt->scope))
		util_usage_error("%s does not take --%s", command->name,
				 opt->name);
	if (opt->kind == OPTION_FLAG && value)
		util_usage_error("--%s takes no value", opt->name);
	if (opt->kind != OPTION_FLAG && !value) {
		if (*i + 1 >= argc)
			util_usage_error("--%s needs a value", opt->name);
		value = argv[++*i];
	}
	store(args, opt, value);
}

/* Fill args from argv; returns the command, or NULL when none was given. */
static const struct command *parse_args(int argc, char **argv,
					struct cmd_args *args)
{
	const struct command *command = NULL;
	bool options_done = false;

	args->headers = util_malloc((size_t)argc * sizeof(*args->headers));
	args->positional =
		util_malloc((size_t)argc * sizeof(*args->positional));
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (!options_done && strcmp(arg, "--") == 0) {
			options_done = true;
		} else if (!options_done && arg[0] == '-' && arg[1]) {
			parse_option(argc, argv, &i, command, args);
		} else if (!command) {
			command = find_command(arg);
			if (!command)
				util_usage_error("unknown command '%s'", arg);
		} else {
			args->positional[args->npositional++] = arg;
		}
	}
	return command;
}

/*
 * The API's base URL: -s, else $DISCOVERY_ADDR, else the default. A bare
 * "host:port" means http; the path, if any, is kept (a reverse proxy may
 * serve the API under a prefix) and trailing slashes are dropped.
 */
static char *resolve_server(const char *option)
{
	const char *env = getenv("DISCOVERY_ADDR");
	const char *url = option ? option : env && *env ? env : DEFAULT_SERVER;
	const char *scheme_end = strstr(url, "://");
	const char *host = scheme_end ? scheme_end + 3 : url;
	char *base;
	size_t len;

	if (scheme_end &&
	    !((scheme_end - url == 4 && strncasecmp(url, "http", 4) == 0) ||
	      (scheme_end - url == 5 && strncasecmp(url, "https", 5) == 0)))
		util_usage_error("server URL '%s': only http:// and https:// "
				 "are spoken",
				 url);
	if (!*host || *host == '/' || strpbrk(url, " ?#") ||
	    util_has_control(url))
		util_usage_error("server URL '%s' is not like "
				 "http://host:port",
				 url);
	len = strlen(url);
	base = util_malloc(len + sizeof("http://"));
	snprintf(base, len + sizeof("http://"), "%s%s",
		 scheme_end ? "" : "http://", url);
	len = strlen(base);
	while (len > 0 && base[len - 1] == '/')
		base[--len] = '\0';
	return base;
}

static char *read_token_file(const char *path)
{
	char *buf = util_malloc(TOKEN_FILE_MAX + 1);
	FILE *f = fopen(path, "r");
	size_t len;

	if (!f)
		util_usage_error("cannot read token file %s: %s", path,
				 strerror(errno));
	len = fread(buf, 1, TOKEN_FILE_MAX + 1, f);
	if (ferror(f))
		util_usage_error("cannot read token file %s: %s", path,
				 strerror(errno));
	fclose(f);
	if (len > TOKEN_FILE_MAX)
		util_usage_error("token file %s is over %d bytes", path,
				 TOKEN_FILE_MAX);
	buf[len] = '\0';
	return buf;
}

/*
 * The bearer token: --token, else --token-file, else $DISCOVERY_TOKEN;
 * NULL for none. An explicit flag wins over the environment, as with
 * consul's -token and -token-file over CONSUL_HTTP_TOKEN.
 */
static char *resolve_token(const struct cmd_args *args)
{
	const char *env = getenv("DISCOVERY_TOKEN");
	char *token = NULL;
	char *start;
	size_t len;

	if (args->token && args->token_file)
		util_usage_error("give --token or --token-file, not both");
	if (args->token)
		token = util_strdup(args->token);
	else if (args->token_file)
		token = read_token_file(args->token_file);
	else if (env && *env)
		token = util_strdup(env);
	if (!token)
		return NULL;
	/* Files end with a newline; editors add blanks. */
	for (start = token; *start == ' ' || *start == '\t' || *start == '\n' ||
			    *start == '\r';
	     start++)
		;
	len = strlen(start);
	while (len > 0 && strchr(" \t\r\n", start[len - 1]))
		len--;
	memmove(token, start, len);
	token[len] = '\0';
	/* Anything else could end the header early or inject another one. */
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)token[i] <= 0x20 ||
		    (unsigned char)token[i] >= 0x7f)
			util_usage_error("the token holds a character that "
					 "cannot go in an HTTP header");
	if (len == 0)
		util_usage_error("the token is empty");
	return token;
}

static long resolve_timeout(const char *option)
{
	int64_t ms;

	if (conf_parse_duration(option ? option : DEFAULT_TIMEOUT, &ms) != 0 ||
	    ms <= 0 || ms > LONG_MAX)
		util_usage_error("--timeout '%s' is not a positive duration "
				 "such as 500ms, 5s or 1m",
				 option ? option : DEFAULT_TIMEOUT);
	return (long)ms;
}

/* --idempotency-key: what the daemon accepts (docs/api.md), or exit 2. */
static const char *resolve_key(const char *option)
{
	size_t n = option ? strlen(option) : 0;

	if (!option)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (option[i] < 0x21 || option[i] > 0x7e || option[i] == '"')
			n = 0;
	if (n == 0 || n > 255)
		util_usage_error("--idempotency-key must be 1 to 255 visible "
				 "ASCII characters");
	return option;
}

/* Colour only for a person at a terminal who has not opted out. */
static bool want_color(void)
{
	const char *term = getenv("TERM");

	return isatty(STDOUT_FILENO) && !getenv("NO_COLOR") &&
	       !(term && strcmp(term, "dumb") == 0);
}

static void check_arg_count(const struct command *command, size_t n)
{
	if (n < command->min_args || n > command->max_args)
		util_usage_error("wrong number of arguments; usage: %s %s",
				 CTL_PROG, command->synopsis);
}

/* Check everything, build the request, then send it: the order is the
 * contract that usage errors exit 2 before anything is sent. */
static int run(const struct command *command, const struct cmd_args *args)
{
	struct cmd_request req = { 0 };
	struct cmd_settings settings = { 0 };
	char *base_url;
	char *token;
	int code;

	check_arg_count(command, args->npositional);
	base_url = resolve_server(args->server);
	token = resolve_token(args);
	settings.base_url = base_url;
	settings.token = token;
	settings.timeout_ms = resolve_timeout(args->timeout);
	settings.idempotency_key = resolve_key(args->idempotency_key);
	settings.cacert = args->cacert ? args->cacert :
					 getenv("DISCOVERY_CACERT");
	settings.json = args->json;
	settings.color = want_color();
	command->build(args, &req);

	if (client_global_init() != 0) {
		fprintf(stderr, CTL_PROG ": cannot initialise libcurl\n");
		code = CTL_EXIT_UNAVAILABLE;
	} else {
		code = args->follow ? follow_events(&settings, req.path) :
		       args->watch  ? watch_endpoints(&settings, req.path) :
				      cmd_run(&settings, &req);
		client_global_cleanup();
	}
	cmd_request_release(&req);
	if (token) {
		memset(token, 0, strlen(token));
		free(token);
	}
	free(base_url);
	return code;
}

/* A command with no server: nothing of -s, --token or --timeout is
 * resolved, so a bad $DISCOVERY_ADDR cannot stop it. */
static int run_local(const struct command *command, const struct cmd_args *args)
{
	check_arg_count(command, args->npositional);
	return command->local(args);
}

int main(int argc, char **argv)
{
	cJSON_Hooks hooks = { util_malloc, free };
	struct cmd_args args = { 0 };
	const struct command *command;
	int code = CTL_EXIT_OK;

	/* cJSON then never returns NULL for lack of memory, only for bad
	 * input, so callers need no second kind of NULL check. */
	cJSON_InitHooks(&hooks);
	command = parse_args(argc, argv, &args);
	if (args.help || (command && strcmp(command->name, "help") == 0))
		fputs(usage_text, stdout);
	else if (args.version ||
		 (command && !command->build && !command->local))
		printf("%s %s\n", CTL_PROG, DISCOVERY_VERSION);
	else if (!command)
		util_usage_error("no command given");
	else if (command->local)
		code = run_local(command, &args);
	else
		code = run(command, &args);
	free(args.headers);
	free(args.positional);
	return code;
}
