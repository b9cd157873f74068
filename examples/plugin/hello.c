// hello.c: an example taskbroker plugin with one handler of each kind.
//
//   hello.slow_upper {"text": S, "ms": N}  POOL: blocks N ms on a worker
//       thread (stopping early on a cancel), then returns S upper-cased.
//   hello.greet {"ms": N}                  LOOP: waits N ms on a libuv
//       timer, then returns "hello, NAME"; NAME is greeting_name in the
//       [plugin hello] section of the broker's config, "world" if unset.
//
// Build: cc -shared -fPIC -o hello.so hello.c
//            $(pkg-config --cflags --libs libuv msgpack)
//        (one line; add -I taskbroker/include if handler.h is not
//        installed)
// Load:  taskbrokerd --plugin ./hello.so   (README.md has the details)

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <uv.h>

#include <taskbroker/handler.h>

TB_PLUGIN_DECLARE(); // the broker checks that we share its handler ABI

// Helpers: read a payload field, return a string result.

// payload_get unpacks the payload into up (destroy it afterwards) and
// returns the value of key if the payload is a map that has it, or NULL.
static const msgpack_object *
payload_get(tb_run *r, msgpack_unpacked *up, const char *key)
{
	size_t      len;
	const char *p = tb_run_payload(r, &len);

	msgpack_unpacked_init(up);
	if (msgpack_unpack_next(up, p, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
	    up->data.type != MSGPACK_OBJECT_MAP) {
		return (NULL);
	}
	for (uint32_t i = 0; i < up->data.via.map.size; i++) {
		const msgpack_object_kv *kv = &up->data.via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR &&
		    kv->key.via.str.size == strlen(key) &&
		    memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0) {
			return (&kv->val);
		}
	}
	return (NULL);
}

// payload_uint returns the unsigned integer under key, or def.
static uint64_t
payload_uint(tb_run *r, const char *key, uint64_t def)
{
	msgpack_unpacked      up;
	const msgpack_object *o = payload_get(r, &up, key);

	if (o != NULL && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		def = o->via.u64;
	}
	msgpack_unpacked_destroy(&up);
	return (def);
}

// payload_str returns a malloc'd, NUL-terminated copy of the string under
// key (its length in *lenp), or NULL if there is none (or no memory).
static char *
payload_str(tb_run *r, const char *key, size_t *lenp)
{
	msgpack_unpacked      up;
	const msgpack_object *o = payload_get(r, &up, key);
	char                 *s = NULL;

	if (o != NULL && o->type == MSGPACK_OBJECT_STR &&
	    (s = malloc(o->via.str.size + 1)) != NULL) {
		memcpy(s, o->via.str.ptr, o->via.str.size);
		s[o->via.str.size] = '\0';
		*lenp              = o->via.str.size;
	}
	msgpack_unpacked_destroy(&up);
	return (s);
}

// result_str sets the attempt's result to the msgpack string s (len
// bytes). Returns 0, or -1 after marking the attempt failed.
static int
result_str(tb_run *r, const char *s, size_t len)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;
	int             rv;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	rv = msgpack_pack_str_with_body(&pk, s, len) == 0 &&
	        tb_run_set_result(r, sb.data, sb.size) == 0
	    ? 0
	    : -1;
	msgpack_sbuffer_destroy(&sb);
	if (rv != 0) {
		tb_run_set_error(r, "out of memory");
	}
	return (rv);
}

// The handlers.

// slow_upper runs on a worker thread, so it may block; it polls
// tb_run_cancelled so a cancel or a timeout stops it within 10 ms.
static int
slow_upper(tb_run *r, void *hdata)
{
	uint64_t end = uv_hrtime() + payload_uint(r, "ms", 0) * 1000000;
	size_t   len;
	char    *text = payload_str(r, "text", &len);
	int      rv   = -1;

	(void) hdata; // no shared state
	if (text == NULL) {
		tb_run_set_error(r, "payload needs {\"text\": string}");
		tb_run_set_no_retry(r); // retrying cannot fix the payload
		return (-1);
	}
	while (uv_hrtime() < end && !tb_run_cancelled(r)) {
		uv_sleep(10);
	}
	for (size_t i = 0; i < len; i++) {
		text[i] = (char) toupper((unsigned char) text[i]);
	}
	if (tb_run_cancelled(r)) {
		tb_run_set_error(r, "cancelled");
	} else {
		rv = result_str(r, text, len);
	}
	free(text);
	return (rv);
}

// greet is one hello.greet attempt: its timer and its run.
typedef struct greet {
	uv_timer_t  timer; // first, so the handle's address is the greet's
	tb_run     *r;
	const char *name;
} greet;

static void
greet_closed(uv_handle_t *h)
{
	free(h->data);
}

// greet_end ends the attempt; r may be freed by tb_run_finish.
static void
greet_end(greet *g)
{
	tb_run_set_data(g->r, NULL);
	tb_run_finish(g->r);
	uv_close((uv_handle_t *) &g->timer, greet_closed);
}

static void
greet_fired(uv_timer_t *t)
{
	greet *g = t->data;
	char   msg[256];

	snprintf(msg, sizeof(msg), "hello, %s", g->name);
	result_str(g->r, msg, strlen(msg));
	greet_end(g);
}

// greet_run runs on the loop thread and must not block: it starts a timer
// and returns; greet_fired or greet_cancel ends the attempt.
static int
greet_run(tb_run *r, void *hdata)
{
	greet *g = calloc(1, sizeof(*g));

	if (g == NULL) {
		tb_run_set_error(r, "out of memory");
		return (-1);
	}
	g->r    = r;
	g->name = hdata; // the greeting_name read at init
	uv_timer_init(tb_run_loop(r), &g->timer);
	g->timer.data = g;
	uv_timer_start(&g->timer, greet_fired, payload_uint(r, "ms", 0), 0);
	tb_run_set_data(r, g); // for greet_cancel
	return (0);
}

// greet_cancel is called on the loop thread on a cancel, a timeout or the
// broker's shutdown; the attempt still ends with tb_run_finish.
static void
greet_cancel(tb_run *r, void *hdata)
{
	greet *g = tb_run_data(r);

	(void) hdata;
	if (g != NULL) {
		uv_timer_stop(&g->timer);
		tb_run_set_error(r, "cancelled");
		greet_end(g);
	}
}

// tb_plugin_init is called once when the broker loads the plugin.
int
tb_plugin_init(tb_plugin_host *host)
{
	const char *name = tb_plugin_config(host, "greeting_name");

	tb_handler_def upper_def = { .name = "hello.slow_upper",
		.mode                      = TB_HANDLER_POOL,
		.run                       = slow_upper };
	tb_handler_def greet_def = { .name = "hello.greet",
		.mode                      = TB_HANDLER_LOOP,
		.run                       = greet_run,
		.cancel                    = greet_cancel,
		.hdata = (void *) (name != NULL ? name : "world") };

	if (tb_register_handler(host, &upper_def) != 0 ||
	    tb_register_handler(host, &greet_def) != 0) {
		return (-1);
	}
	return (0);
}
