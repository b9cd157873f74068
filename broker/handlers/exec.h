// handlers/exec.h: the built-in "exec" handler, which runs a program with
// an argv array, never through a shell.
//
// DESIGN. The payload is {"argv": [...], "env": {...}, "cwd": "...",
// "stdin": bytes}; argv[0] is found in the task's PATH (a minimal default,
// not the broker's) and must pass --exec-allow. The child is started with
// uv_spawn as a session and process-group leader, with only stdin, stdout
// and stderr open; its exit comes back as a loop callback, so no thread
// waits. An attempt is a small state machine over six libuv handles (the
// process, three pipes, two timers): it ends when the child has exited and
// every handle has closed. Output pipes still open EXEC_PIPE_GRACE_MS after
// the exit (a grandchild holds them) are closed. A cancel sends SIGTERM to
// the process group, then SIGKILL after --exec-kill-grace. The result is
// {exit_status, term_signal, stdout, stderr, stdout_cut, stderr_cut}, the
// last --exec-output-max bytes of each stream; a non-zero exit, a signal
// or a cancel fail the attempt.
//
// Threads: loop thread only.
// Ownership: an attempt's exec_state belongs to its run (hdata) and is
// freed when its last handle closes; the settings read at start are this
// module's until exec_handler_fini.

#ifndef HANDLERS_EXEC_H
#define HANDLERS_EXEC_H

#include "config.h"

// exec_handler_init reads exec's settings from cfg (--exec-kill-grace,
// --exec-output-max), resolves every --exec-allow entry (realpath; one
// that does not exist is an error) and registers "exec" (a loop handler)
// through handlers_register. Returns TB_OK; TB_EINVAL (after a log line)
// for an --exec-allow entry that cannot be resolved; TB_ENOMEM; or the
// code of handlers_register. Whatever it kept is freed by
// exec_handler_fini, also after an error. Loop thread, once, from
// handlers_init.
int exec_handler_init(const config *cfg);

// exec_handler_fini forgets the resolved --exec-allow list. Idempotent.
// After the loop has ended (handlers_fini calls it).
void exec_handler_fini(void);

#endif // HANDLERS_EXEC_H
