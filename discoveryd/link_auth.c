/*
 * link_auth: an agent link's token, when auth is on (auth.h). The token is
 * checked before the upgrade, and a refusal is answered 401 or 403 with the
 * API's JSON error, written through lws so that it reaches a wss client
 * too; lws then closes gracefully (it shuts its side and reads until the
 * client closes, or its timeout), so a client still sending never turns
 * the answer into a reset. At the upgrade the link keeps what it needs: the
 * service an agent token binds the hello to, the subject for the log, the
 * expiry, and which secret signed it. The hub's tick closes a link (1008)
 * whose token has expired, or whose secret a reload dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub_int.h"
#include "log.h"

static int refuse_handshake(struct lws *wsi, const struct auth_result *ar)
{
	unsigned char buf[LWS_PRE + 768];
	char *text = (char *)buf + LWS_PRE, body[256];
	size_t room = sizeof(buf) - LWS_PRE;
	cJSON *o = cJSON_CreateObject();
	char *json;
	int b, n;

	cJSON_AddStringToObject(o, "error", ar->error);
	cJSON_AddStringToObject(o, "message", ar->message);
	json = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	b = snprintf(body, sizeof(body), "%s", json ? json : "{}");
	free(json);
	if (b < 0 || (size_t)b >= sizeof(body))
		return -1;
	/* Not lws's own status page: it speaks HTTP/1.0 and HTML here. */
	n = snprintf(text, room,
		     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		     "%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		     ar->status,
		     ar->status == 401 ? "Unauthorized" : "Forbidden",
		     ar->status == 401 ? "WWW-Authenticate: Bearer "
					 "realm=\"discovery\"\r\n" :
					 "",
		     b, body);
	if (n < 0 || (size_t)n >= room ||
	    lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_FINAL) < n)
		return -1;
	return 1;
}

/*
 * The token of an agent's handshake: "Authorization: Bearer T", or
 * "?token=T" for browsers, which cannot set headers on a WebSocket.
 * 0 when allowed (ar filled), or a refusal (logged).
 */
static int check_token(struct hub *h, struct lws *wsi, struct auth_result *ar)
{
	char header[TOKEN_MAX_LEN + 16], arg[TOKEN_MAX_LEN + 8], q[160];
	const char *value;
	bool bare = false;

	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
	    lws_hdr_copy(wsi, header, sizeof(header),
			 WSI_TOKEN_HTTP_AUTHORIZATION) > 0) {
		value = header;
	} else {
		/* Returns a pointer into arg, past "token=". */
		value = lws_get_urlarg_by_name(wsi, "token=", arg, sizeof(arg));
		bare = true;
	}
	auth_check(h->auth, value, bare, AUTH_LINK, ar);
	if (!ar->status)
		return 0;
	log_info("refused", "status=%d reason=%s", ar->status,
		 log_quote(q, sizeof(q), ar->message));
	return -1;
}

int link_auth_confirm(struct hub *h, struct lws *wsi)
{
	struct auth_result ar;

	if (!auth_enabled(h->auth) || check_token(h, wsi, &ar) == 0)
		return 0;
	return refuse_handshake(wsi, &ar);
}

void link_auth_forget(struct link *l)
{
	free(l->token);
	l->token = NULL;
}

/* The claims l keeps, with their text, in one allocation (link_token). */
static int keep_claims(struct link *l, const struct token_claims *claims,
		       unsigned secret)
{
	const char *svc = claims->role == TOKEN_ROLE_AGENT ? claims->svc : "";
	size_t ns = strlen(svc) + 1, nb = strlen(claims->sub) + 1;
	struct link_token *t = malloc(sizeof(*t) + ns + nb);

	if (!t)
		return -1;
	t->exp = claims->exp;
	t->secret = secret;
	memcpy(t->text, svc, ns);
	memcpy(t->text + ns, claims->sub, nb);
	t->svc = svc[0] ? t->text : NULL;
	t->sub = claims->sub[0] ? t->text + ns : NULL;
	l->token = t;
	return 0;
}

int link_auth_take(struct hub *h, struct lws *wsi, struct link *l)
{
	struct auth_result ar;

	if (!auth_enabled(h->auth))
		return 0;
	/* Checked before the upgrade already; again here for the claims. */
	if (check_token(h, wsi, &ar) != 0)
		return -1;
	return keep_claims(l, &ar.claims, ar.secret);
}

/*
 * From the tick: true when l was closed because its token ran out (with
 * the same leeway as at the handshake) or, the secrets having changed, the
 * one that signed it is gone.
 */
bool link_auth_lapsed(struct hub *h, struct link *l, int64_t now_s,
		      bool secrets_changed)
{
	if (!l->token || !l->token->exp)
		return false;
	if (now_s >= l->token->exp + TOKEN_LEEWAY) {
		link_close(l, 1008, "token expired");
		return true;
	}
	if (secrets_changed && !auth_secret_kept(h->auth, l->token->secret)) {
		link_close(l, 1008, "token secret dropped");
		return true;
	}
	return false;
}
