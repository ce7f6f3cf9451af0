/*
 * client: discoveryctl's HTTP client on one libcurl easy handle. See
 * client.h for the contract.
 *
 * The handle is configured once (timeouts, protocols, no redirects, no
 * signals) and reset per request only in what a request changes: method,
 * URL, body and headers.
 */
#include "client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifndef DISCOVERY_VERSION
#define DISCOVERY_VERSION "0.0.0"
#endif

struct client {
	CURL *curl;
	char *base_url;
	char *auth_header; /* "Authorization: Bearer ..." or NULL */
	long timeout_ms;
};

/* The body being received, capped at CLIENT_MAX_BODY. */
struct body_buf {
	char *data;
	size_t len;
	size_t cap;
	int too_big;
};

int client_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void client_global_cleanup(void)
{
	curl_global_cleanup();
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct body_buf *buf = userdata;
	size_t n = size * nmemb;

	/* Returning short makes libcurl stop with CURLE_WRITE_ERROR. */
	if (n > CLIENT_MAX_BODY - buf->len) {
		buf->too_big = 1;
		return 0;
	}
	if (buf->len + n + 1 > buf->cap) {
		size_t cap = buf->cap ? buf->cap : 4096;

		while (cap < buf->len + n + 1)
			cap *= 2;
		buf->data = util_realloc(buf->data, cap);
		buf->cap = cap;
	}
	memcpy(buf->data + buf->len, data, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
	return n;
}

/* Settings that hold for every request this client makes. */
static CURLcode configure(CURL *curl, long timeout_ms)
{
	CURLcode rc = CURLE_OK;

	/* No SIGALRM for DNS timeouts: safe in any program, threads or not. */
	rc |= curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	rc |= curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	rc |= curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	rc |= curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE,
			       (curl_off_t)CLIENT_MAX_BODY);
	rc |= curl_easy_setopt(curl, CURLOPT_USERAGENT,
			       CTL_PROG "/" DISCOVERY_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075500
	rc |= curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	rc |= curl_easy_setopt(curl, CURLOPT_PROTOCOLS,
			       (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	rc |= curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	return rc;
}

struct client *client_new(const struct client_config *config, char *err,
			  size_t errlen)
{
	struct client *c = util_malloc(sizeof(*c));

	c->curl = curl_easy_init();
	if (!c->curl || configure(c->curl, config->timeout_ms) != CURLE_OK) {
		snprintf(err, errlen, "cannot set up libcurl");
		if (c->curl)
			curl_easy_cleanup(c->curl);
		free(c);
		return NULL;
	}
	if (config->cacert && curl_easy_setopt(c->curl, CURLOPT_CAINFO,
					       config->cacert) != CURLE_OK) {
		snprintf(err, errlen, "cannot use the CA file %s",
			 config->cacert);
		curl_easy_cleanup(c->curl);
		free(c);
		return NULL;
	}
	c->base_url = util_strdup(config->base_url);
	c->timeout_ms = config->timeout_ms;
	c->auth_header = NULL;
	if (config->token) {
		static const char prefix[] = "Authorization: Bearer ";
		size_t len = sizeof(prefix) + strlen(config->token);

		c->auth_header = util_malloc(len);
		snprintf(c->auth_header, len, "%s%s", prefix, config->token);
	}
	return c;
}

void client_free(struct client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c->base_url);
	if (c->auth_header) {
		/* The token is a credential: no copy left in freed memory. */
		memset(c->auth_header, 0, strlen(c->auth_header));
		free(c->auth_header);
	}
	free(c);
}

static struct curl_slist *request_headers(const struct client *c, int has_body,
					  const char *key_line)
{
	struct curl_slist *headers = NULL;
	struct curl_slist *next;
	const char *lines[5];
	size_t n = 0;

	lines[n++] = "Accept: application/json";
	/* curl would wait for "100 Continue" before a large body; our server
	 * answers at once, so the wait would only add latency. */
	lines[n++] = "Expect:";
	/* Without a body, "Content-Type:" removes the form type curl would
	 * otherwise claim for an empty POST. */
	lines[n++] = has_body ? "Content-Type: application/json" :
				"Content-Type:";
	if (c->auth_header)
		lines[n++] = c->auth_header;
	if (key_line)
		lines[n++] = key_line;
	for (size_t i = 0; i < n; i++) {
		next = curl_slist_append(headers, lines[i]);
		if (!next) {
			curl_slist_free_all(headers);
			return NULL;
		}
		headers = next;
	}
	return headers;
}

/* Method and body; every option a previous request may have set is reset. */
static CURLcode set_method(CURL *curl, const char *method, const char *body)
{
	CURLcode rc = CURLE_OK;

	if (strcmp(method, "GET") == 0)
		return curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L) |
		       curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, NULL);
	if (strcmp(method, "POST") == 0 || body) {
		/* An empty POST still needs POSTFIELDS, or curl reads stdin. */
		rc |= curl_easy_setopt(curl, CURLOPT_POSTFIELDS,
				       body ? body : "");
		rc |= curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
				       (curl_off_t)(body ? strlen(body) : 0));
	} else {
		rc |= curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	}
	rc |= curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST,
			       strcmp(method, "POST") == 0 ? NULL : method);
	return rc;
}

static int transfer_error(const struct client *c, CURLcode rc,
			  const struct body_buf *buf, const char *detail,
			  char *err, size_t errlen)
{
	if (buf->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(err, errlen,
			 "response from %s is larger than %zu MiB; refused",
			 c->base_url, CLIENT_MAX_BODY >> 20);
		return CLIENT_E_TOO_BIG;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(err, errlen, "no answer from %s within %ld ms",
			 c->base_url, c->timeout_ms);
		return CLIENT_E_TRANSPORT;
	}
	snprintf(err, errlen, "cannot reach %s: %s", c->base_url,
		 detail[0] ? detail : curl_easy_strerror(rc));
	return CLIENT_E_TRANSPORT;
}

int client_request(struct client *c, const char *method, const char *path,
		   const char *body, const char *idempotency_key,
		   struct client_response *resp, char *err, size_t errlen)
{
	char detail[CURL_ERROR_SIZE] = "", key_line[300];
	struct body_buf buf = { 0 };
	struct curl_slist *headers;
	size_t url_len = strlen(c->base_url) + strlen(path) + 1;
	char *url = util_malloc(url_len);
	CURLcode rc;

	if (idempotency_key)
		snprintf(key_line, sizeof(key_line), "Idempotency-Key: %s",
			 idempotency_key);
	headers = request_headers(c, body != NULL,
				  idempotency_key ? key_line : NULL);
	snprintf(url, url_len, "%s%s", c->base_url, path);
	rc = headers ? CURLE_OK : CURLE_OUT_OF_MEMORY;
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(c->curl, CURLOPT_URL, url) |
		     curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers) |
		     curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &buf) |
		     curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, detail) |
		     set_method(c->curl, method, body);
	if (rc == CURLE_OK)
		rc = curl_easy_perform(c->curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE,
				  &resp->status);

	/* The handle must not keep pointers to what we free below. */
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, NULL);
	curl_slist_free_all(headers);
	free(url);

	if (rc != CURLE_OK) {
		int code = transfer_error(c, rc, &buf, detail, err, errlen);

		free(buf.data);
		return code;
	}
	resp->body = buf.data ? buf.data : util_strdup("");
	resp->len = buf.len;
	return CLIENT_OK;
}

struct stream_ctx {
	client_data_fn fn;
	void *ud;
};

static size_t on_stream(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct stream_ctx *s = userdata;
	size_t n = size * nmemb;

	return s->fn(data, n, s->ud) == 0 ? n : 0;
}

int client_stream(struct client *c, const char *path, const char *last_id,
		  client_data_fn on_data, void *ud, long *status, char *err,
		  size_t errlen)
{
	char detail[CURL_ERROR_SIZE] = "", id_header[64];
	struct stream_ctx ctx = { on_data, ud };
	struct curl_slist *headers = NULL;
	size_t url_len = strlen(c->base_url) + strlen(path) + 1;
	char *url = util_malloc(url_len);
	CURLcode rc;

	snprintf(url, url_len, "%s%s", c->base_url, path);
	headers = curl_slist_append(headers, "Accept: text/event-stream");
	if (c->auth_header)
		headers = curl_slist_append(headers, c->auth_header);
	if (last_id) {
		snprintf(id_header, sizeof(id_header), "Last-Event-ID: %s",
			 last_id);
		headers = curl_slist_append(headers, id_header);
	}
	rc = curl_easy_setopt(c->curl, CURLOPT_URL, url) |
	     curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers) |
	     curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L) |
	     curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, 0L) |
	     curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L) |
	     curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, 45L) |
	     curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_stream) |
	     curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &ctx) |
	     curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, detail);
	if (rc == CURLE_OK)
		rc = curl_easy_perform(c->curl);
	/* A stop asked for by on_data is not an error. */
	if (rc == CURLE_WRITE_ERROR)
		rc = CURLE_OK;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_slist_free_all(headers);
	free(url);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "stream from %s lost: %s", c->base_url,
			 detail[0] ? detail : curl_easy_strerror(rc));
		return CLIENT_E_TRANSPORT;
	}
	return CLIENT_OK;
}

void client_response_release(struct client_response *resp)
{
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}
