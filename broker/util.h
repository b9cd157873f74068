// util.h: small helpers shared by broker modules.
//
// Threads: any thread, unless a declaration says otherwise.
// Lock order: no locks.
// Ownership: nothing is allocated here.

#ifndef UTIL_H
#define UTIL_H

#include <pthread.h>
#include <stdint.h>

// util_now_us returns the wall clock as Unix microseconds.
int64_t util_now_us(void);

// util_mono_us returns a monotonic clock in microseconds.
int64_t util_mono_us(void);

// util_thread_start starts fn(arg) on a new thread with every signal
// blocked, so that signals reach only the loop thread (libuv handles them
// there). Every thread the broker starts goes through it. Returns 0 or the
// pthread_create error number. Any thread.
int util_thread_start(pthread_t *tp, void *(*fn)(void *), void *arg);

// util_group_id resolves a group given by name or number into *gidp.
// Returns 0, or -1 if there is no such group. Start-up only (getgrnam).
int util_group_id(const char *name, int64_t *gidp);

#endif // UTIL_H
