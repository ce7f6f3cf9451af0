/*
 * proto_json: JSON text as strictly as an agent frame is read (proto.h),
 * for frames, API bodies and tokens' claims alike, and numbers kept as
 * written.
 *
 * Text passes four gates before cJSON builds a tree: a nesting scan that
 * never recurses, a text check (cJSON checks neither UTF-8 nor control
 * characters, and cuts a string at \u0000), a number check (cJSON's strtod
 * takes 01 and 1.), then cJSON with nothing but whitespace left over.
 *
 * cJSON keeps numbers as doubles, exact only to 2^53, and prints them back
 * with an approximate round-trip check (9007199254740991 comes back as
 * 9007199254740990). Both needs for the exact text (a seq, an event's
 * value) find it the same way: the n-th number of the tree in document
 * order is the n-th number token of the text.
 */
#include <stdio.h>
#include <string.h>

#include "proto.h"
#include "proto_int.h"

/* Why the text is refused, into err (a close reason: at most
 * PROTO_REASON_MAX bytes); NULL for the caller to return. */
static cJSON *refuse(char *err, size_t errlen, const char *why)
{
	if (err && errlen > 0)
		snprintf(err,
			 errlen < PROTO_REASON_MAX + 1 ? errlen :
							 PROTO_REASON_MAX + 1,
			 "%s", why);
	return NULL;
}

/* ---- scanning raw text ------------------------------------------------ */

/* From the opening quote at i to just past the closing one (or len). A
 * \u0000 escape is noted: cJSON would cut the string short there, so a
 * value could silently differ from what the peer sent. */
static size_t skip_string(const char *buf, size_t len, size_t i,
			  bool *nul_escape)
{
	for (i++; i < len; i++) {
		if (buf[i] == '"')
			return i + 1;
		if (buf[i] != '\\')
			continue;
		if (nul_escape && len - i >= 6 &&
		    memcmp(buf + i + 1, "u0000", 5) == 0)
			*nul_escape = true;
		i++;
	}
	return len;
}

static int scan_depth(const char *buf, size_t len, int limit, bool *nul_escape)
{
	int depth = 0, deepest = 0;
	size_t i = 0;

	while (i < len) {
		switch (buf[i]) {
		case '"': i = skip_string(buf, len, i, nul_escape); continue;
		case '[':
		case '{':
			if (++depth > deepest) {
				deepest = depth;
				if (deepest > limit)
					return deepest;
			}
			break;
		case ']':
		case '}':
			if (depth > 0)
				depth--;
			break;
		default: break;
		}
		i++;
	}
	return deepest;
}

int proto_json_depth(const char *buf, size_t len, int limit)
{
	return scan_depth(buf, len, limit, NULL);
}

/* Why buf is not acceptable JSON text, or NULL. UTF-8 per RFC 3629 (no
 * overlongs, surrogates or code points past U+10FFFF); control characters
 * other than JSON's whitespace are never valid JSON, in or out of strings. */
static const char *text_problem(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i], lo = 0x80, hi = 0xBF;
		size_t more;

		if (c >= 0x20 && c < 0x80) {
			i++;
			continue;
		}
		if (c == 0)
			return "NUL byte in the text";
		if (c < 0x20) {
			if (c != '\t' && c != '\n' && c != '\r')
				return "control character in the text";
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			more = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			more = 2;
			lo = c == 0xE0 ? 0xA0 : 0x80;
			hi = c == 0xED ? 0x9F : 0xBF;
		} else if (c >= 0xF0 && c <= 0xF4) {
			more = 3;
			lo = c == 0xF0 ? 0x90 : 0x80;
			hi = c == 0xF4 ? 0x8F : 0xBF;
		} else {
			return "text is not valid UTF-8";
		}
		if (len - i <= more || s[i + 1] < lo || s[i + 1] > hi)
			return "text is not valid UTF-8";
		for (size_t k = 2; k <= more; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return "text is not valid UTF-8";
		i += more + 1;
	}
	return NULL;
}

/* ---- numbers: the tree's and the text's --------------------------------- */

/* Trees are walked without recursion; deeper than this is refused (frames
 * and bodies are PROTO_DEPTH_MAX deep at most, journal records one more). */
#define WALK_DEPTH_MAX 64

/*
 * Call visit for every number of root, in document order: cJSON keeps
 * members and elements in the order of the text, so the n-th number visited
 * is the n-th number token of the text root was parsed from. root's own
 * siblings are not walked. Returns 1 when visit stopped the walk (by
 * returning false), 0 when every number was visited, -1 when root is nested
 * deeper than WALK_DEPTH_MAX.
 */
static int walk_numbers(const cJSON *root,
			bool (*visit)(const cJSON *number, void *ctx),
			void *ctx)
{
	const cJSON *parents[WALK_DEPTH_MAX];
	const cJSON *item = root;
	size_t top = 0;

	for (;;) {
		if (cJSON_IsNumber(item) && !visit(item, ctx))
			return 1;
		if ((cJSON_IsObject(item) || cJSON_IsArray(item)) &&
		    item->child) {
			if (top == WALK_DEPTH_MAX)
				return -1;
			parents[top++] = item;
			item = item->child;
			continue;
		}
		while (top > 0 && !item->next)
			item = parents[--top];
		if (top == 0)
			return 0;
		item = item->next;
	}
}

static bool is_number_char(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' ||
	       c == 'e' || c == 'E';
}

/* The next number token of buf at or after *pos, which moves past it.
 * Outside strings, a '-' or a digit can only start a number (the literals
 * true, false, null hold neither); a token runs as far as cJSON reads one. */
static bool next_number(const char *buf, size_t len, size_t *pos,
			const char **token, size_t *token_len)
{
	size_t i = *pos;

	while (i < len) {
		size_t start = i;

		if (buf[i] == '"') {
			i = skip_string(buf, len, i, NULL);
			continue;
		}
		if (buf[i] != '-' && (buf[i] < '0' || buf[i] > '9')) {
			i++;
			continue;
		}
		while (i < len && is_number_char(buf[i]))
			i++;
		*token = buf + start;
		*token_len = i - start;
		*pos = i;
		return true;
	}
	*pos = len;
	return false;
}

static size_t skip_digits(const char *s, size_t n, size_t i)
{
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	return i;
}

/* Is s[0..n) a number as RFC 8259 spells one? cJSON (strtod) also takes
 * 01, 1., .5 after a sign, 1.e5: passed on byte for byte, they would reach
 * agents whose parsers refuse them. */
static bool json_number(const char *s, size_t n)
{
	size_t i = s[0] == '-' ? 1 : 0, j;

	if (i < n && s[i] == '0')
		i++;
	else if ((j = skip_digits(s, n, i)) > i)
		i = j;
	else
		return false;
	if (i < n && s[i] == '.') {
		if ((j = skip_digits(s, n, i + 1)) == i + 1)
			return false;
		i = j;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if ((j = skip_digits(s, n, i)) == i)
			return false;
		i = j;
	}
	return i == n;
}

static bool numbers_valid(const char *buf, size_t len)
{
	const char *token;
	size_t pos = 0, n;

	while (next_number(buf, len, &pos, &token, &n))
		if (!json_number(token, n))
			return false;
	return true;
}

struct number_search {
	const cJSON *target;
	size_t index;
};

static bool count_until(const cJSON *number, void *ctx)
{
	struct number_search *s = ctx;

	if (number == s->target)
		return false;
	s->index++;
	return true;
}

bool proto_number_text(const cJSON *root, const cJSON *number, const char *buf,
		       size_t len, const char **token, size_t *token_len)
{
	struct number_search s = { .target = number };
	size_t pos = 0;

	if (walk_numbers(root, count_until, &s) != 1)
		return false;
	do {
		if (!next_number(buf, len, &pos, token, token_len))
			return false;
	} while (s.index-- > 0);
	return true;
}

/* ---- exact numbers ------------------------------------------------------ */

struct exact {
	const char *buf;
	size_t len, pos;
	bool failed;
};

/* A number whose token would not print back as written (past 2^53, 1.50,
 * 1E3, -0, 1e999) becomes a raw node holding the token. */
static bool keep_text(const cJSON *number, void *ctx)
{
	struct exact *x = ctx;
	cJSON *item = (cJSON *)number; /* ours: proto_json_exact's tree */
	const char *token;
	char printed[64];
	size_t n;
	char *text;

	if (!next_number(x->buf, x->len, &x->pos, &token, &n)) {
		x->failed = true;
		return false;
	}
	if (cJSON_PrintPreallocated(item, printed, sizeof(printed), 0) &&
	    strlen(printed) == n && memcmp(printed, token, n) == 0)
		return true;
	text = cJSON_malloc(n + 1);
	if (!text) {
		x->failed = true;
		return false;
	}
	memcpy(text, token, n);
	text[n] = '\0';
	item->type = cJSON_Raw;
	item->valuestring = text;
	return true;
}

int proto_json_exact(cJSON *tree, const char *buf, size_t len)
{
	struct exact x = { .buf = buf, .len = len };

	if (walk_numbers(tree, keep_text, &x) != 0 || x.failed)
		return -1;
	return 0;
}

/* ---- seqs: uint64 read from the text --------------------------------- */

bool proto_parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || (s[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned digit = (unsigned)(s[i] - '0');

		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - digit) / 10)
			return false;
		v = v * 10 + digit;
	}
	*out = v;
	return true;
}

static bool only_whitespace(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			return false;
	return true;
}

cJSON *proto_parse_json(const char *buf, size_t len, int depth_limit, char *err,
			size_t errlen)
{
	const char *problem, *end = NULL;
	bool nul_escape = false;
	cJSON *root;

	if (err && errlen > 0)
		err[0] = '\0';
	if (scan_depth(buf, len, depth_limit, &nul_escape) > depth_limit) {
		char why[48];

		snprintf(why, sizeof(why), "JSON nested too deep (limit %d)",
			 depth_limit);
		return refuse(err, errlen, why);
	}
	problem = text_problem((const unsigned char *)buf, len);
	if (!problem && nul_escape)
		problem = "\\u0000 in a string";
	if (!problem && !numbers_valid(buf, len))
		problem =
			"a number that is not JSON (a leading zero, or a bare "
			"'.', 'e' or sign)";
	if (problem)
		return refuse(err, errlen, problem);
	root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (!root)
		return refuse(err, errlen, "not valid JSON");
	if (!only_whitespace(end, buf + len)) {
		cJSON_Delete(root);
		return refuse(err, errlen, "data after the JSON value");
	}
	return root;
}
