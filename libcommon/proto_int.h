/*
 * proto_int: what proto.c (the messages) uses from proto_json.c (the
 * strict text). Internal to libcommon: programs include proto.h only.
 */
#ifndef DISCOVERY_PROTO_INT_H
#define DISCOVERY_PROTO_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

/* A WebSocket close reason holds 123 bytes; leave a little slack. */
#define PROTO_REASON_MAX 120

/*
 * The text of number, one of root's numbers, as buf (the text root was
 * parsed from) spells it: *token, *token_len bytes. Call it before anything
 * is detached from the tree. false when the tree and the text disagree.
 */
bool proto_number_text(const cJSON *root, const cJSON *number, const char *buf,
		       size_t len, const char **token, size_t *token_len);

#endif
