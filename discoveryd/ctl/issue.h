/*
 * issue: `discoveryctl token issue`, the one command answered without a
 * server. It reads the HS256 secret the daemon reads (auth.secret_file),
 * signs a token for a role with libcommon's token module, and prints it.
 *
 * The file is issue.c, not token.c, so that its header never shadows
 * libcommon's token.h for the other files of this directory.
 */
#ifndef DISCOVERYCTL_ISSUE_H
#define DISCOVERYCTL_ISSUE_H

#include "cmd.h"

/* The lifetime of a token when --ttl is not given, and the longest one. */
#define ISSUE_DEFAULT_TTL "24h"
#define ISSUE_MAX_TTL_S   (10LL * 366 * 24 * 3600) /* ten years */

/*
 * Run `token SUBCOMMAND` from args (positional[0] is the subcommand).
 * Usage errors exit CTL_EXIT_USAGE before the secret is read. Returns the
 * process exit code: CTL_EXIT_OK with the token and a newline on stdout,
 * or CTL_EXIT_REFUSED (1) with one line on stderr when the secret file
 * cannot be used or stdout cannot be written.
 */
int issue_run(const struct cmd_args *args);

#endif
