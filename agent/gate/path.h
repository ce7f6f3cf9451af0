/*
 * path: whether a request target may pass the locked gate.
 *
 * While the gate is locked only targets under a `pass` prefix reach the
 * app, and the app, not the gate, decides what a target means: it may
 * unescape %2e%2e, resolve dot segments, cut a ";param", turn a backslash
 * into a slash, or unescape twice. So a target passes only when every
 * such reading gives the same path: after one round of percent-decoding
 * it holds no dot segment, no "%" (a second round), no ";", no "\", no
 * control byte, and it lies under a pass prefix. Anything else gets the
 * locked answer: a strange target never widens the pass list.
 */
#ifndef GATE_PATH_H
#define GATE_PATH_H

#include <stdbool.h>
#include <stddef.h>

#define PATH_MAX_BYTES 8192 /* a longer path never passes */

/* target: the raw request target ("/a/b?q"). True when it passes one of
 * the n prefixes. */
bool path_passes(const char *target, char *const *prefixes, size_t n);

/* A `pass` entry as the config may give it: "/" then a clean path. */
bool path_valid_prefix(const char *prefix);

#endif
