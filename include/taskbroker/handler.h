// taskbroker/handler.h: the interface for writing task handlers that run
// inside taskbrokerd, built in or loaded from a plugin.
//
// A handler is a name, a mode, a run function, an optional cancel function
// and a pointer of the handler's own. The broker calls run once per attempt
// with a tb_run, the attempt; the handler reads the task's payload from it
// and reports the outcome through it.
//
// - TB_HANDLER_LOOP: run is called on the broker's event loop thread and
//   must not block. It starts the work (a timer, a child process, a
//   socket...) and returns; the attempt ends when the handler calls
//   tb_run_finish, from any thread, exactly once (possibly before run
//   returns). cancel, if given, is called on the loop thread when the
//   attempt times out, is cancelled or the broker shuts down; the handler
//   must then end the attempt soon, still with tb_run_finish.
// - TB_HANDLER_POOL: run is called on one of the broker's worker threads
//   and may block. The attempt ends when run returns (do not call
//   tb_run_finish). A long job should poll tb_run_cancelled and return
//   early; if it does not, its late result is discarded.
//
// Outcome: tb_run_set_result (msgpack bytes, copied) for success, or
// tb_run_set_error for a failed attempt (retried per the task's policy).
// run returning non-zero also fails the attempt (LOOP: then tb_run_finish
// must not be called).
//
// A plugin is a shared object that exports
//     int tb_plugin_init(tb_plugin_host *host);
// which registers its handlers with tb_register_handler and may read its
// own configuration (the [plugin NAME] section of the broker's config
// file, NAME being the file name without directory and ".so") with
// tb_plugin_config. It returns 0, or non-zero to stop the broker's start.
// Plugins are loaded only from paths named in the configuration
// (--plugin PATH), once, at start.
//
// A plugin also exports the integer tb_plugin_abi_version, the
// TB_HANDLER_ABI it was built with: put TB_PLUGIN_DECLARE(); once in one of
// its source files. The broker refuses a plugin without it, or with another
// value, before calling tb_plugin_init. (tb_plugin_abi below is the
// broker's side of the same check.) Build a plugin with -fPIC -shared; the
// tb_* functions it calls are resolved against taskbrokerd when it loads.

#ifndef TASKBROKER_HANDLER_H
#define TASKBROKER_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// TB_HANDLER_ABI changes whenever this interface changes incompatibly; the
// broker refuses a plugin built against another value.
#define TB_HANDLER_ABI 1

typedef struct tb_run         tb_run;
typedef struct tb_plugin_host tb_plugin_host;

enum tb_handler_mode {
	TB_HANDLER_LOOP = 0,
	TB_HANDLER_POOL = 1,
};

typedef struct tb_handler_def {
	const char *name; // 1..128 bytes; copied
	int         mode; // enum tb_handler_mode
	int (*run)(tb_run *r, void *hdata);
	void (*cancel)(tb_run *r, void *hdata); // may be NULL
	void *hdata;
} tb_handler_def;

// tb_register_handler adds a handler. Returns 0, or non-zero (and logs
// why) if the name is taken, invalid, or def is malformed: the broker then
// does not start. Only from tb_plugin_init.
int tb_register_handler(tb_plugin_host *host, const tb_handler_def *def);

// tb_plugin_config returns the value of key in the plugin's configuration
// section, or NULL. The string lives as long as the broker.
const char *tb_plugin_config(tb_plugin_host *host, const char *key);

// tb_plugin_abi returns TB_HANDLER_ABI as the broker was built; the
// broker checks it against the plugin's before tb_plugin_init.
int tb_plugin_abi(void);

// The plugin's side. These are defined by the plugin, never by the broker;
// the declarations give them default visibility, so they are exported even
// from a plugin built with -fvisibility=hidden.

// tb_plugin_init is the plugin's entry point, called once on the broker's
// loop thread before any task runs. It registers handlers and reads its
// configuration; it returns 0, or non-zero to stop the broker's start.
__attribute__((visibility("default"))) int tb_plugin_init(
    tb_plugin_host *host);

// tb_plugin_abi_version is TB_HANDLER_ABI as the plugin was built; defined
// by TB_PLUGIN_DECLARE().
__attribute__((visibility("default"))) extern const int tb_plugin_abi_version;

// TB_PLUGIN_DECLARE() defines tb_plugin_abi_version. Use it once per
// plugin, at file scope, followed by a semicolon.
#define TB_PLUGIN_DECLARE() const int tb_plugin_abi_version = TB_HANDLER_ABI

// Attempt accessors. Valid from run until the attempt ends.
uint64_t    tb_run_task_id(const tb_run *r);
const char *tb_run_queue(const tb_run *r);   // the task's queue
const char *tb_run_handler(const tb_run *r); // the handler's name
uint32_t    tb_run_attempt(const tb_run *r); // 1 for the first
const void *tb_run_payload(const tb_run *r, size_t *lenp); // msgpack
void       *tb_run_loop(tb_run *r); // the uv_loop_t * (LOOP handlers)
uint32_t    tb_run_timeout_ms(const tb_run *r); // 0: none

// tb_run_set_result stores a copy of msgpack bytes as the result and marks
// the attempt successful. Returns 0, or -1 when out of memory or when the
// result is over 64 KiB: bytes cut short would not decode, so such an
// attempt fails instead, and is not retried.
int tb_run_set_result(tb_run *r, const void *msgpack, size_t len);

// tb_run_set_error marks the attempt failed with a message (cut to 4 KiB).
void tb_run_set_error(tb_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// tb_run_set_no_retry marks a failure as final: no further attempt.
void tb_run_set_no_retry(tb_run *r);

// tb_run_set_data attaches a pointer of the handler's own to this attempt
// (NULL at first), so that cancel, which gets the handler's shared hdata,
// can find the attempt's state: a LOOP handler's timer or child process.
// tb_run_data returns it. The broker never reads it. Loop thread for LOOP
// handlers; the worker thread running the attempt for POOL handlers.
void  tb_run_set_data(tb_run *r, void *data);
void *tb_run_data(const tb_run *r);

// tb_run_cancelled is non-zero once the attempt should stop (timeout,
// cancel, shutdown). Any thread.
int tb_run_cancelled(const tb_run *r);

// tb_run_finish ends a LOOP attempt. Any thread; exactly once.
void tb_run_finish(tb_run *r);

#ifdef __cplusplus
}
#endif

#endif // TASKBROKER_HANDLER_H
