// handlers/sqlite.h: the built-in "sqlite" handler, which runs
// parameterised SQL against databases the operator named with
// --sqlite-db NAME=PATH.
//
// DESIGN. A task names a database (never a path), one statement (sql,
// params) or several (statements: [{sql, params}, ...]); they run in one
// transaction on that database's writer thread, batched with other tasks,
// each task behind its own savepoint. The task's writes and a row in the
// table _taskbroker_applied commit together, so an attempt that runs again
// after a crash finds its record and succeeds with the stored result
// instead of applying the SQL twice. sqlite.c says more (batches,
// cancellation, the authorizer); README.md's section on the sqlite handler
// describes the payload, the result and the failure semantics for users.
//
// Threads: init and stop on the loop thread; the handler's run function on
// the loop thread; one writer thread per database, which ends attempts
// with tb_run_finish.
// Lock order: one leaf mutex per database (its queue), never held while
// SQLite runs or a tb_run_* call is made.
// Ownership: each writer owns its database connection; a queued attempt's
// job (a copy of its payload) belongs to the writer until the attempt has
// been finished.

#ifndef HANDLER_SQLITE_H
#define HANDLER_SQLITE_H

#include "config.h"

// sqlite_handler_init opens every database named in cfg->sqlite_dbs
// (NAME=PATH; NAME is 1..64 of [A-Za-z0-9_-]), sets it up (WAL,
// synchronous=FULL, busy timeout, the _taskbroker_applied table), starts
// one writer thread per database and registers the handler "sqlite"
// (TB_HANDLER_LOOP) through handlers_register. With no database configured
// it still registers "sqlite", whose tasks then fail (final) with a clear
// error. Returns TB_OK; TB_EINVAL for a malformed entry or a duplicate
// name, TB_ESTORE for a database that cannot be opened or set up, or the
// code of handlers_register, each after a log line; on error nothing is
// left open or running. In test builds the fault site
// sqlite_exit_after_commit (fault.h) makes the process _exit(137) right
// after a commit of any sqlite writer. Loop thread, once, at start (after
// handlers_init).
int sqlite_handler_init(const config *cfg);

// sqlite_handler_stop lets each writer finish the batch it is running;
// tasks still queued end with the error "broker shutting down" (or succeed
// with their stored result if an earlier attempt applied them). It then
// joins the threads and closes the databases. Every attempt handed to the
// handler has been finished (tb_run_finish) when it returns, so call it
// before handlers_stop. Idempotent; a no-op if init was never called or
// failed. Loop thread.
void sqlite_handler_stop(void);

#endif // HANDLER_SQLITE_H
