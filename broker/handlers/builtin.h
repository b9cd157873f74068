// handlers/builtin.h: the built-in handlers for tests and benchmarks:
// noop, sleep, fail and block.
//
// noop succeeds at once; sleep {"ms"} ends after ms milliseconds on a loop
// timer (no thread waits; cancel stops it); fail {"message"} fails at once
// with the message (or "failed on purpose"); block {"ms"} sleeps on a
// worker thread (a POOL handler), in 10 ms slices so that a cancel is seen
// soon. A payload without a non-negative integer "ms" fails sleep and block.
//
// Threads: registration on the loop thread at start; noop, sleep and fail
// run on the loop thread, block on a worker thread.
// Ownership: sleep's timer belongs to its attempt (the run's hdata) and is
// freed when it closes; nothing else is kept.

#ifndef HANDLERS_BUILTIN_H
#define HANDLERS_BUILTIN_H

// builtin_register registers noop, sleep, fail and block through
// handlers_register. Returns TB_OK or the first error of
// handlers_register. Loop thread, once, from handlers_init.
int builtin_register(void);

#endif // HANDLERS_BUILTIN_H
