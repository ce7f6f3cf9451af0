/*
 * client: the HTTP client of discoveryctl, on libcurl.
 *
 * One client is one server (base URL, token, timeout) and one reusable curl
 * handle. A request sends a method, a path under the base URL and an
 * optional JSON body, and returns the status and the whole response body.
 * Redirects are never followed (an API that answers 3xx is misconfigured, and
 * following would carry the token elsewhere), only http and https are
 * spoken, and bodies over CLIENT_MAX_BODY are refused rather than buffered.
 */
#ifndef DISCOVERYCTL_CLIENT_H
#define DISCOVERYCTL_CLIENT_H

#include <stddef.h>

/* The largest response body we accept; the API's answers are far smaller. */
#define CLIENT_MAX_BODY ((size_t)16 << 20)

enum client_error {
	CLIENT_OK = 0,
	CLIENT_E_TRANSPORT = -1, /* no connection, TLS, timeout, bad reply */
	CLIENT_E_TOO_BIG = -2,   /* body over CLIENT_MAX_BODY */
	CLIENT_E_INIT = -3,      /* libcurl could not be set up */
};

struct client_config {
	const char *base_url; /* "http://host:port", no trailing slash */
	const char *token;    /* "Authorization: Bearer TOKEN"; NULL: none */
	long timeout_ms;      /* connect and whole-request limit, > 0 */
	const char *cacert; /* PEM CA file for https; NULL: the system store */
};

struct client_response {
	long status; /* HTTP status code */
	char *body;  /* owned; NUL-terminated, the NUL not counted in len */
	size_t len;
};

struct client;

/* curl_global_init / cleanup: once per program, before any thread. */
int client_global_init(void);
void client_global_cleanup(void);

/*
 * A client for config (its strings are copied). NULL with a message in err
 * when libcurl cannot be set up.
 */
struct client *client_new(const struct client_config *config, char *err,
			  size_t errlen);
void client_free(struct client *c);

/*
 * Send method path (path starts with '/') with body (a JSON text, or NULL
 * for none) and, when not NULL, an Idempotency-Key header. On CLIENT_OK, resp
 * holds the answer whatever its status, and the caller releases it with
 * client_response_release. On error, err holds a sentence and resp holds
 * nothing to release.
 */
int client_request(struct client *c, const char *method, const char *path,
		   const char *body, const char *idempotency_key,
		   struct client_response *resp, char *err, size_t errlen);

void client_response_release(struct client_response *resp);

/*
 * A long GET of path as a Server-Sent Events stream: each piece of the body
 * goes to on_data as it arrives (return 0 to go on, non-zero to stop). No
 * overall timeout; a stream silent for 45 s (the daemon sends a keep-alive
 * every 15 s) counts as lost. last_id, when not NULL, is sent as
 * Last-Event-ID. Returns CLIENT_OK with the HTTP status in *status once the
 * stream ends, or CLIENT_E_TRANSPORT with a message.
 */
typedef int (*client_data_fn)(const char *data, size_t len, void *ud);
int client_stream(struct client *c, const char *path, const char *last_id,
		  client_data_fn on_data, void *ud, long *status, char *err,
		  size_t errlen);

#endif
