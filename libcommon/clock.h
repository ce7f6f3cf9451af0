/*
 * clock: the two clocks every program here reads. The monotonic clock
 * measures intervals and deadlines (it never jumps); the wall clock is
 * only for what is shown or stored as a date (an event's time, a token's
 * expiry, a declaration's deadline across restarts).
 */
#ifndef DISCOVERY_CLOCK_H
#define DISCOVERY_CLOCK_H

#include <stdint.h>
#include <time.h>

int64_t clock_mono_ms(void);
int64_t clock_mono_us(void);
int64_t clock_wall_ms(void);
/* A monotonic time in ms as a timespec, for pthread_cond_timedwait on a
 * condition variable set to CLOCK_MONOTONIC. */
struct timespec clock_mono_ts(int64_t ms);

#endif
