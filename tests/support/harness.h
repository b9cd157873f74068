// harness.h: the integration-test harness. It starts the real taskbrokerd
// in a fresh temporary directory, talks to it through the real client
// library, and stops every process it started by its pid.
//
// DESIGN. nng is not fork-safe and the test process uses nng, so every child
// (the broker, the CLI, producer processes) is started with posix_spawn,
// never fork. Producers are the test binary itself, re-executed through
// /proc/self/exe with a special argv[1] that the test's main() handles
// before cmocka runs (tbh_spawn_self).
//
// The broker listens on ipc://DIR/tb.sock and publishes on ipc://DIR/ev.sock
// (STYLE.md section 10 asks for tcp://127.0.0.1:0 and NNG_OPT_TCP_BOUND_PORT,
// but the test process cannot read a port bound inside another process, and
// ipc paths in a private temp dir never collide either). Its stdout and
// stderr go to DIR/broker.log; a failed test prints the tail of that log.
//
// Waiting is always on a condition with a deadline (a ping answered, a
// process exited, an event arrived); never sleep-and-hope.
//
// Environment: TB_BROKER_BIN and TB_CLI_BIN name the binaries (set by
// ctest); TBH_KEEP=1 keeps the temp dir of every test; TBH_TIME_SCALE=N
// multiplies the deadlines (for slow sanitizer builds).
//
// Threads: everything here is for the test's main thread.

#ifndef TBH_HARNESS_H
#define TBH_HARNESS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <setjmp.h>

#include <cmocka.h>

#include <msgpack.h>
#include <nng/nng.h>
#include <taskbroker.h>

#define TBH_MAX_ARGS 16
#define TBH_PATH 256

// tbh_broker is one broker process and its directory. Zero it (or use
// tbh_setup's fixture) before tbh_start.
typedef struct tbh_broker {
	char  dir[64];            // the temp dir, "" before tbh_start
	char  data_dir[TBH_PATH]; // DIR/data
	char  url[TBH_PATH];      // ipc://DIR/tb.sock
	char  events_url[TBH_PATH];
	char  log_path[TBH_PATH];  // DIR/broker.log
	char *extra[TBH_MAX_ARGS]; // copies of the extra arguments
	int   nextra;
	pid_t pid;     // 0 when not running
	int   wstatus; // the last waitpid status, valid after an exit
	int   starts;  // how many times it was started
	bool  exited;  // wstatus is set
	// conn is how tbh_client, tbh_wait_ready and tbh_sub_open reach the
	// broker (a token, TLS settings); NULL: the environment, as
	// tb_client_open. Not owned; it must outlive the broker's use.
	const tb_conn_opts *conn;
} tbh_broker;

// tbh_scale returns TBH_TIME_SCALE (default 1); deadlines are multiplied
// by it.
int tbh_scale(void);

// tbh_now_ms returns a monotonic clock in milliseconds.
int64_t tbh_now_ms(void);

// tbh_sleep_ms pauses the calling thread; used only between polls.
void tbh_sleep_ms(int ms);

// tbh_start makes a fresh temp dir, then starts TB_BROKER_BIN with
// --data-dir DIR/data --listen URL --events EVURL followed by args (a
// NULL-terminated list of extra arguments, may be NULL), and waits until the
// broker answers a ping (deadline 10 s times the scale). Returns 0, or -1
// after printing why (the broker exited, never answered, spawn failed); on
// -1 the broker is stopped but the dir is kept for tbh_cleanup.
int tbh_start(tbh_broker *b, const char *const *args);

// tbh_broker_paths makes b's directory (as tbh_start does when b has
// none) and fills its data dir, ipc urls and log path, without starting
// anything: for a test that needs them before the broker runs. Does
// nothing if b has a directory. Returns 0 or -1.
int tbh_broker_paths(tbh_broker *b);

// tbh_restart starts the broker again in the same dir, with the same data
// and the same arguments; it must not be running. Returns as tbh_start.
int tbh_restart(tbh_broker *b);

// tbh_spawn_broker starts the broker without waiting for it to answer
// (tbh_wait_ready does that). Returns 0 or -1.
int tbh_spawn_broker(tbh_broker *b);

// tbh_wait_ready polls tb_ping until the broker answers or timeout_ms
// passes; fails early if the process exits. Returns 0 or -1.
int tbh_wait_ready(tbh_broker *b, int timeout_ms);

// tbh_running is true while the broker process has not exited (waitpid
// WNOHANG; an exit is recorded in b->wstatus).
bool tbh_running(tbh_broker *b);

// tbh_signal sends sig to the broker. Returns 0 or -1.
int tbh_signal(tbh_broker *b, int sig);

// tbh_wait_exit waits up to timeout_ms for the broker to exit. Returns 0
// when it has exited (b->wstatus set, b->pid 0), -1 on timeout.
int tbh_wait_exit(tbh_broker *b, int timeout_ms);

// tbh_stop sends SIGTERM and waits up to timeout_ms for the exit. Returns
// the exit code (0..255) when it exited normally, 128+signal when killed
// by a signal, or -1 on timeout (it is still running then).
int tbh_stop(tbh_broker *b, int timeout_ms);

// tbh_exit_code turns b->wstatus into exit code / 128+signal.
int tbh_exit_code(const tbh_broker *b);

// tbh_kill9 kills the broker with SIGKILL and reaps it. Returns 0 or -1.
int tbh_kill9(tbh_broker *b);

// tbh_mkdtemp makes a fresh directory $TBH_TMPDIR/tbh-XXXXXX (/tmp when
// TBH_TMPDIR is unset; keep it short: ipc paths live below it) in buf and
// returns buf, or NULL with errno set.
char *tbh_mkdtemp(char *buf, size_t len);

// tbh_tmp_root is $TBH_TMPDIR, or /tmp when it is unset.
const char *tbh_tmp_root(void);

// tbh_cleanup kills the broker if it still runs, and removes the temp dir
// (kept if TBH_KEEP is set or failed is true, then its path is printed).
// If failed, the log tail is printed first. Frees the argument copies.
// Returns 0, or -1 if the broker's log has a sanitizer report (printed;
// the dir is kept): tbh_teardown then fails the test.
int tbh_cleanup(tbh_broker *b, bool failed);

// tbh_sanitizer_report says whether the broker's log has a report of
// AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer, and
// prints it.
bool tbh_sanitizer_report(const tbh_broker *b);

// tbh_print_log prints the last max_lines lines of the broker log to stderr.
void tbh_print_log(const tbh_broker *b, int max_lines);

// tbh_log_note appends a line to the broker log (marks restarts etc.).
void tbh_log_note(const tbh_broker *b, const char *fmt, ...);

// tbh_client opens a client on the broker's URL (with b->conn) with the
// given request timeout (ms, <= 0 for the library default). Returns NULL
// on failure.
tb_client *tbh_client(const tbh_broker *b, int timeout_ms);

// Processes.

// tbh_spawn starts argv[0] with posix_spawn, stdin from /dev/null, stdout
// to out_path and stderr to err_path (NULL: inherit; the same path for
// both: one file). Writes the pid to *pidp. Returns 0 or -1.
int tbh_spawn(pid_t *pidp, char *const argv[], const char *out_path,
    const char *err_path);

// tbh_spawn_self re-executes this test binary (/proc/self/exe) with args as
// argv[1..] (NULL-terminated). stdout/stderr as tbh_spawn.
int tbh_spawn_self(pid_t *pidp, const char *const *args, const char *out_path,
    const char *err_path);

// tbh_rmtree removes dir and everything below it.
void tbh_rmtree(const char *dir);

// tbh_waitpid waits up to timeout_ms for pid to exit. Returns its exit code
// (128+signal if killed), or -1 on timeout (still running).
int tbh_waitpid(pid_t pid, int timeout_ms);

// tbh_kill_reap sends SIGKILL to pid and reaps it. For cleanup paths.
void tbh_kill_reap(pid_t pid);

// tbh_run runs argv to completion (deadline timeout_ms, then SIGKILL),
// capturing stdout and stderr into malloc'd strings (*outp, *errp; either
// may be NULL). Returns the exit code as tbh_waitpid, -1 on timeout or
// spawn failure.
int tbh_run(char *const argv[], int timeout_ms, char **outp, char **errp,
    const char *tmpdir);

// tbh_read_file returns the malloc'd content of path (NUL-terminated) and
// its length in *lenp (may be NULL), or NULL.
char *tbh_read_file(const char *path, size_t *lenp);

// tbh_read_ids reads one decimal id per line from path into a malloc'd
// array (*idsp, *np). Incomplete last lines are ignored. Returns 0 or -1.
int tbh_read_ids(const char *path, tb_id **idsp, size_t *np);

// Payloads (msgpack maps). Each returns a malloc'd buffer the caller frees.

// tbh_pack_empty packs {}.
void *tbh_pack_empty(size_t *lenp);
// tbh_pack_ms packs {"ms": ms} (sleep, block).
void *tbh_pack_ms(uint64_t ms, size_t *lenp);
// tbh_pack_message packs {"message": msg} (fail).
void *tbh_pack_message(const char *msg, size_t *lenp);
// tbh_pack_argv packs {"argv": [argv...]} (exec); argv NULL-terminated.
void *tbh_pack_argv(const char *const *argv, size_t *lenp);
// tbh_pack_cstr packs the NUL-terminated s as a msgpack string, for tests
// that build their own payloads.
void tbh_pack_cstr(msgpack_packer *pk, const char *s);

// tbh_map_get returns the value under key in the msgpack map m, or NULL (also
// when m is not a map). The value points into m.
const msgpack_object *tbh_map_get(const msgpack_object *m, const char *key);

// Convenience on top of the client.

// tbh_submit submits one task with a payload and optional opts; asserts
// success and returns the id.
tb_id tbh_submit(tb_client *c, const char *handler, const void *payload,
    size_t len, const tb_submit_opts *opts);

// tbh_wait_final waits up to timeout_ms for the task to end; asserts that it
// did and returns it (free with tb_task_free).
tb_task *tbh_wait_final(tb_client *c, tb_id id, int timeout_ms);

// tbh_wait_state polls tb_status until the task is in state or timeout_ms
// passes. Returns 0 or -1.
int tbh_wait_state(tb_client *c, tb_id id, int state, int timeout_ms);

// tbh_row is one task of a store listing.
typedef struct tbh_row {
	tb_id    id;
	int      state;
	uint32_t attempts;
	uint32_t crashes;
} tbh_row;

// tbh_list_all lists every task in the store (pages of 1000, in id order)
// into a malloc'd array (*rowsp, *np). Returns a tb_err code.
int tbh_list_all(tb_client *c, tbh_row **rowsp, size_t *np);

// tbh_find_row finds id in rows (sorted by id), or NULL.
const tbh_row *tbh_find_row(const tbh_row *rows, size_t n, tb_id id);

// tbh_sub_open opens a subscription on the broker's events (prefix "tb.")
// and makes sure it is live: it submits noop tasks until one of their
// events arrives (SUB connects asynchronously and PUB drops messages for
// pipes not yet attached). Asserts success.
tb_sub *tbh_sub_open(const tbh_broker *b, tb_client *c, const char *prefix);

// tbh_sub_expect receives events until one for task id named name ("done")
// arrives, or timeout_ms passes. Returns the event (free it) or NULL.
tb_event *tbh_sub_expect(
    tb_sub *s, tb_id id, const char *name, int timeout_ms);

// Raw requests (nng req0), for malformed input.

// tbh_raw_open opens a req0 socket dialed to url with send/recv timeouts.
// Returns an nng error code.
int tbh_raw_open(nng_socket *sp, const char *url, int timeout_ms);

// tbh_raw_call sends buf and receives the reply into a malloc'd buffer
// (*repp, *replenp; free it). Returns an nng error code (0 ok).
int tbh_raw_call(
    nng_socket s, const void *buf, size_t len, void **repp, size_t *replenp);

// tbh_free_tcp_port returns a loopback tcp port that was free a moment
// ago (asserts).
int tbh_free_tcp_port(void);

// tbh_storm makes n raw connections to url (ipc://PATH, or
// tcp://127.0.0.1:PORT and tls+tcp://127.0.0.1:PORT) and closes each at
// once, before any handshake: what stopped nng 1.5.2's listeners. A
// connection refused for a moment (the broker replacing a listener) is
// made again, so n are made in all; asserts within 20 s.
void tbh_storm(const char *url, int n);

// tbh_raw_negotiate connects a raw socket to url (as tbh_storm), sends the
// SP header of protocol proto (e.g. 0x30, a REQ peer) and reads the
// broker's, waiting up to timeout_ms. Returns the connected descriptor
// (the caller closes it), or -1.
int tbh_raw_negotiate(const char *url, uint16_t proto, int timeout_ms);

// tbh_fd_wait_eof reads and drops what fd receives until its end (or a
// reset) within timeout_ms: true then, false if it stayed open.
bool tbh_fd_wait_eof(int fd, int timeout_ms);

// tbh_filter_from_env runs only the tests matching $TBH_FILTER (a cmocka
// pattern with * and ?), if set. Call before cmocka_run_group_tests.
void tbh_filter_from_env(void);

// The standard fixture: one broker, one client, one subscription; a test
// sets passed = true as its last statement so teardown knows whether to
// print the broker log.
typedef struct tbh_fix {
	tbh_broker b;
	tb_client *c;
	tb_sub    *sub;
	bool       passed;
} tbh_fix;

// tbh_setup allocates a zeroed fixture (the broker is not started).
int tbh_setup(void **state);

// tbh_teardown closes the subscription and client, stops the broker and
// removes its dir (prints the log tail unless passed).
int tbh_teardown(void **state);

// tbh_fix_start starts the fixture's broker with args and opens f->c
// (request timeout 10 s); asserts success.
void tbh_fix_start(tbh_fix *f, const char *const *args);

// TBH_RV fails the test, naming the expression and both errors, unless expr
// returns want (a tb_err code). TBH_OK(expr) is TBH_RV(expr, TB_OK).
#define TBH_RV(expr, want)                                                 \
	do {                                                               \
		int tbh_rv_ = (expr);                                      \
		if (tbh_rv_ != (want)) {                                   \
			print_error("%s:%d: %s returned %d (%s), want %d " \
			            "(%s)\n",                              \
			    __FILE__, __LINE__, #expr, tbh_rv_,            \
			    tb_errname(tbh_rv_), (int) (want),             \
			    tb_errname(want));                             \
			fail();                                            \
		}                                                          \
	} while (0)
#define TBH_OK(expr) TBH_RV(expr, TB_OK)

// TBH_MS scales a deadline by TBH_TIME_SCALE.
#define TBH_MS(ms) ((int) ((ms) *tbh_scale()))

// Additions for the lifecycle, admin and schedule tests.

// tbh_write_config makes the broker's temp dir if tbh_start has not yet
// (so a test can write a config file before the first start), writes text
// to DIR/name and copies that path into path (size bytes). Returns 0 or -1.
int tbh_write_config(tbh_broker *b, const char *name, const char *text,
    char *path, size_t size);

// tbh_count_tasks counts the tasks of queue (NULL: all) in state (-1: all)
// by paging through tb_list. Returns a tb_err code; the count in *np.
int tbh_count_tasks(tb_client *c, const char *queue, int state, size_t *np);

// tbh_count is tbh_count_tasks that fails the test on an error and returns
// the count.
size_t tbh_count(tb_client *c, const char *queue, int state);

// tbh_list_every lists every task that o selects (paging through them all,
// o.limit and o.after_id are its own) into one malloc'd array (*tsp, *np;
// free it with tb_task_list_free). Returns a tb_err code; on an error
// nothing is left to free.
int tbh_list_every(tb_client *c, tb_list_opts o, tb_task ***tsp, size_t *np);

// tbh_cli runs TB_CLI_BIN --broker URL args... (args NULL-terminated) in
// the broker's dir (deadline 30 s, scaled) and returns its exit code as
// tbh_run; stdout and stderr in *outp and *errp (either may be NULL; free
// them).
int tbh_cli(
    const tbh_broker *b, char **outp, char **errp, const char *const *args);

// tbh_procs_with_arg scans /proc/*/cmdline for live processes that have an
// argument equal to arg (zombies have no cmdline and are not counted). Up
// to max pids go to pids (may be NULL). Returns how many it found.
int tbh_procs_with_arg(const char *arg, pid_t *pids, int max);

// Checks and helpers shared by the integration tests. The expect_ ones fail
// the test (cmocka fail()) with a message naming what was wanted.

// tbh_wall_us returns the wall clock in Unix microseconds, as the broker's
// times (created_at, started_at, ...).
int64_t tbh_wall_us(void);

// tbh_expect_state fails unless t is in state want, naming both with t's
// attempts and error; on failure it frees t (the test ends there, and
// sanitizer runs stay leak-free).
void tbh_expect_state(tb_task *t, int want);

// tbh_status fetches task id, asserting success; free it with tb_task_free.
tb_task *tbh_status(tb_client *c, tb_id id);

// tbh_fix_start_config writes ini as DIR/broker.ini and starts the fixture's
// broker with --config DIR/broker.ini followed by args (NULL-terminated, may
// be NULL), as tbh_fix_start.
void tbh_fix_start_config(
    tbh_fix *f, const char *ini, const char *const *args);

// tbh_fix_restart stops the fixture's broker gracefully (SIGTERM), fails
// unless it exited 0, and starts it again in the same dir with the same
// arguments; the subscription f->sub, if open, is reopened.
void tbh_fix_restart(tbh_fix *f);

// tbh_cli_expect runs the CLI as tbh_cli and fails unless it exits with
// want, printing its stdout and stderr. Returns its stdout (free it).
char *tbh_cli_expect(const tbh_broker *b, int want, const char *const *args);

// tbh_cli_ok is tbh_cli_expect with want 0.
char *tbh_cli_ok(const tbh_broker *b, const char *const *args);

// Processes marked by an argument: a test starts `sleep MARKER` children
// (through exec tasks) and finds them again in /proc by that argument.

// tbh_marker_make writes into buf (size bytes) a sleep argument no other
// process has: "1NNN.PID" with a per-call counter NNN.
void tbh_marker_make(char *buf, size_t size);

// tbh_marker_wait waits up to timeout_ms until at least n processes have the
// argument marker or, if n is 0, until none has. Returns the last count.
int tbh_marker_wait(const char *marker, int n, int timeout_ms);

// tbh_marker_kill kills (SIGKILL) what a failed test left behind: the
// processes with the argument marker. They were started for this test.
void tbh_marker_kill(const char *marker);

#endif // TBH_HARNESS_H
