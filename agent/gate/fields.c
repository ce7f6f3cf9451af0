/*
 * fields: "name\0value\0" pairs (see fields.h).
 */
#include <string.h>
#include <strings.h>

#include "fields.h"

bool fields_next(const struct buf *fields, size_t *pos, const char **name,
		 const char **value)
{
	size_t n;

	if (*pos >= fields->len)
		return false;
	*name = fields->p + *pos;
	n = strnlen(*name, fields->len - *pos);
	*pos += n + 1;
	if (*pos >= fields->len)
		return false; /* not a whole pair: cannot happen */
	*value = fields->p + *pos;
	n = strnlen(*value, fields->len - *pos);
	*pos += n + 1;
	return *pos <= fields->len;
}

const char *fields_get(const struct buf *fields, const char *name,
		       size_t *count)
{
	const char *n, *v, *first = NULL;
	size_t pos = 0, k = 0;

	while (fields_next(fields, &pos, &n, &v))
		if (!strcasecmp(n, name)) {
			if (!k++)
				first = v;
		}
	if (count)
		*count = k;
	return first;
}

bool fields_lists(const char *value, const char *token)
{
	size_t n = strlen(token);

	for (const char *p = value; p && *p;) {
		p += strspn(p, " \t,");
		size_t len = strcspn(p, " \t,");

		if (len == n && !strncasecmp(p, token, n))
			return true;
		p += len;
	}
	return false;
}
