// fuzz_tbp_struct.c: structure-aware libFuzzer target for the request
// decoder, beside the byte-level fuzz_tbp_decode.c.
//
// The fuzzer's bytes do not go to the decoder: they steer a generator that
// writes a well-formed request envelope [version, op, req_id, body] for an
// op of TBP_OPS, whose body holds that op's fields (tbp.h), each with a
// value picked for trouble: 0, -1, INT32/INT64/UINT64 limits, 2^63, each
// documented limit and one past it, wrong msgpack types (floats, strings
// for numbers, maps for strings), nil, nested maps and arrays, long and
// huge strings; plus stray keys, and now and then a cut or padded buffer.
// Then it checks what the decoder made of it:
//
//   - the result is one of the documented codes;
//   - a request that decodes has every duration, time, count and name
//     within its documented range (TBP_MAX_DURATION_MS, TBP_MAX_TIME_US,
//     TBP_MAX_TASKS, TBP_MAX_NAME, ...);
//   - an integer written out of its field's range was refused (the
//     generator knows what it wrote);
//   - the broker's own arithmetic on the decoded numbers (scheduler.h:
//     sched_age_cutoff, sched_run_at, sched_every_us, sched_hold_ms,
//     sched_next_due; the code the loop runs for list, purge, submit,
//     schedules, wait and drain) runs for clocks from 1970 to 9999, so a
//     range check missing from the decoder overflows under UBSan or fails
//     an assert there.
//
// A broken property calls abort(). Built with libFuzzer (TB_FUZZ) it is
// fuzz_tbp_struct; without, replay.c turns it into fuzz_tbp_struct_replay,
// which ctest runs over tests/fuzz/corpus_struct in every build.

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "tbp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                      \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, \
			    #cond);                                        \
			abort();                                           \
		}                                                          \
	} while (0)

#define HOLD_MAX_MS 3600000LL // the broker's WAIT_MAX_MS
#define MAX_NEST 40           // past TBP_MAX_DEPTH
#define HUGE_LEN (TBP_MAX_MSG + 1u)
#define BUDGET (3u * HUGE_LEN) // long-string bytes in one request

// in is the fuzzer's input, read one choice at a time; past its end every
// choice is 0, which the generator reads as "the ordinary, valid value".
typedef struct in {
	const uint8_t *p;
	size_t         n;
	size_t         off;
} in;

static uint8_t
in_byte(in *s)
{
	return (s->off < s->n ? s->p[s->off++] : 0);
}

// in_pick returns a choice in [0, n).
static unsigned
in_pick(in *s, unsigned n)
{
	return (in_byte(s) % n);
}

// The kinds of field a request body holds (tbp.h); the range of each is
// what the decoder must enforce.
enum fkind {
	F_ID,      // uint64
	F_U32,     // uint32
	F_I32,     // int32
	F_TIME,    // int64 within +-TBP_MAX_TIME_US
	F_DUR,     // uint64 up to TBP_MAX_DURATION_MS
	F_TMO,     // int64 from TBP_MIN_TIMEOUT_MS to TBP_MAX_DURATION_MS
	F_STATE,   // uint below TBP_NSTATES
	F_NAME,    // 0..TBP_MAX_NAME bytes, no NUL
	F_NAME1,   // 1..TBP_MAX_NAME bytes, no NUL
	F_KEY,     // 1..TBP_MAX_KEY bytes
	F_CRON,    // 0..TBP_MAX_CRON bytes
	F_PAYLOAD, // bin holding one msgpack object, up to TBP_MAX_PAYLOAD
	F_SID,     // bin of TB_SID_LEN bytes
	F_BOOL,
	F_TASKS,   // array of task_in
	F_SCHED,   // a sched map
	F_NAMES,   // array of names (worker_hello)
	F_IDS,     // array of uint64 (worker_bye)
	F_RESULTS, // array of worker_done results
};

typedef struct field {
	const char *key;
	enum fkind  kind;
} field;

// The fields the decoder reads, per op; a stray key of another op's is
// added now and then and must be ignored.
static const field f_none[]   = { { NULL, 0 } };
static const field f_submit[] = { { "tasks", F_TASKS }, { NULL, 0 } };
static const field f_id[]     = { { "id", F_ID }, { NULL, 0 } };
static const field f_wait[]   = { { "id", F_ID }, { "timeout_ms", F_TMO },
	  { NULL, 0 } };
static const field f_list[]   = { { "queue", F_NAME }, { "state", F_STATE },
	  { "limit", F_U32 }, { "after_id", F_ID }, { "handler", F_NAME },
	  { "min_age_ms", F_DUR }, { "max_age_ms", F_DUR }, { NULL, 0 } };
static const field f_retry[]  = { { "id", F_ID }, { "queue", F_NAME },
	 { "state", F_STATE }, { NULL, 0 } };
static const field f_queue1[] = { { "queue", F_NAME1 }, { NULL, 0 } };
static const field f_drain[]  = { { "queue", F_NAME }, { "timeout_ms", F_TMO },
	 { NULL, 0 } };
static const field f_purge[]  = { { "queue", F_NAME }, { "state", F_STATE },
	 { "min_age_ms", F_DUR }, { NULL, 0 } };
static const field f_sched_add[]   = { { "schedule", F_SCHED }, { NULL, 0 } };
static const field f_name[]        = { { "name", F_NAME1 }, { NULL, 0 } };
static const field f_sched_pause[] = { { "name", F_NAME1 },
	{ "paused", F_BOOL }, { NULL, 0 } };
static const field f_task[]  = { { "sid", F_SID }, { "handler", F_NAME1 },
	 { "queue", F_NAME }, { "payload", F_PAYLOAD }, { "priority", F_I32 },
	 { "max_attempts", F_U32 }, { "timeout_ms", F_U32 },
	 { "delay_ms", F_U32 }, { "run_at", F_TIME }, { "key", F_KEY },
	 { "forever", F_BOOL }, { NULL, 0 } };
static const field f_sched[] = { { "name", F_NAME1 }, { "handler", F_NAME1 },
	{ "queue", F_NAME }, { "payload", F_PAYLOAD }, { "priority", F_I32 },
	{ "max_attempts", F_U32 }, { "timeout_ms", F_U32 },
	{ "every_ms", F_DUR }, { "cron", F_CRON }, { "catch_up", F_BOOL },
	{ "paused", F_BOOL }, { NULL, 0 } };

static const field f_hello[]  = { { "handlers", F_NAMES },
	 { "queues", F_NAMES }, { "slots", F_U32 }, { "pid", F_ID },
	 { "host", F_NAME }, { "name", F_NAME }, { NULL, 0 } };
static const field f_take[]   = { { "worker_id", F_ID }, { "free", F_U32 },
	  { "dones", F_ID }, { NULL, 0 } };
static const field f_done[]   = { { "worker_id", F_ID }, { "id", F_ID },
	  { "attempt", F_U32 }, { "ok", F_BOOL }, { "result", F_PAYLOAD },
	  { "error", F_KEY }, { "retryable", F_BOOL }, { "seq", F_ID },
	  { "results", F_RESULTS }, { NULL, 0 } };
static const field f_result[] = { { "id", F_ID }, { "attempt", F_U32 },
	{ "ok", F_BOOL }, { "result", F_PAYLOAD }, { "error", F_KEY },
	{ "retryable", F_BOOL }, { "seq", F_ID }, { NULL, 0 } };
static const field f_bye[] = { { "worker_id", F_ID }, { "hand_back", F_IDS },
	{ NULL, 0 } };

static const field *const op_fields[TBP_OP_COUNT] = {
	[TBP_OP_PING]         = f_none,
	[TBP_OP_SUBMIT]       = f_submit,
	[TBP_OP_STATUS]       = f_id,
	[TBP_OP_WAIT]         = f_wait,
	[TBP_OP_CANCEL]       = f_id,
	[TBP_OP_LIST]         = f_list,
	[TBP_OP_STATS]        = f_none,
	[TBP_OP_SHUTDOWN]     = f_none,
	[TBP_OP_RETRY]        = f_retry,
	[TBP_OP_PAUSE]        = f_queue1,
	[TBP_OP_RESUME]       = f_queue1,
	[TBP_OP_DRAIN]        = f_drain,
	[TBP_OP_PURGE]        = f_purge,
	[TBP_OP_SCHED_ADD]    = f_sched_add,
	[TBP_OP_SCHED_LIST]   = f_none,
	[TBP_OP_SCHED_RM]     = f_name,
	[TBP_OP_SCHED_PAUSE]  = f_sched_pause,
	[TBP_OP_QUEUES]       = f_none,
	[TBP_OP_WORKER_HELLO] = f_hello,
	[TBP_OP_WORKER_TAKE]  = f_take,
	[TBP_OP_WORKER_DONE]  = f_done,
	[TBP_OP_WORKER_BYE]   = f_bye,
	[TBP_OP_WORKERS]      = f_none,
};

// Integers at and around every limit. The first of each table is the
// ordinary value the zero choice gives.
static const uint64_t pos_ints[] = {
	1, 0, 2, 127, 128, 255, 256, 65535, 65536, 1000, 1001, 3600000,
	INT32_MAX, (uint64_t) INT32_MAX + 1, UINT32_MAX,
	(uint64_t) UINT32_MAX + 1, 1ull << 53, TBP_MAX_DURATION_MS,
	TBP_MAX_DURATION_MS + 1, TBP_MAX_DURATION_MS * 1000, TBP_MAX_TIME_US,
	TBP_MAX_TIME_US + 1, INT64_MAX / 1000, INT64_MAX / 1000 + 1, INT64_MAX,
	1ull << 63, // 2^63
	(1ull << 63) + 1, UINT64_MAX - 1, UINT64_MAX,
	1800000000000000ull, // 2027 in Unix µs
};

static const int64_t neg_ints[] = {
	-1,
	-2,
	-32,
	-33,
	-128,
	-129,
	-32768,
	INT32_MIN,
	(int64_t) INT32_MIN - 1,
	-TBP_MAX_DURATION_MS,
	-TBP_MAX_TIME_US,
	-TBP_MAX_TIME_US - 1,
	INT64_MIN / 1000,
	INT64_MIN / 1000 - 1,
	INT64_MIN + 1,
	INT64_MIN,
};

static const uint32_t str_lens[] = {
	4,
	0,
	1,
	15,
	16,
	17,
	31,
	32,
	127,
	TBP_MAX_NAME,
	TBP_MAX_NAME + 1,
	TBP_MAX_CRON,
	TBP_MAX_CRON + 1,
	255,
	TBP_MAX_KEY,
	TBP_MAX_KEY + 1,
	65535,
	65536,
	TBP_MAX_PAYLOAD,
	TBP_MAX_PAYLOAD + 1,
	HUGE_LEN,
};

static const uint32_t count_lens[] = {
	1,
	0,
	2,
	3,
	15,
	16,
	17,
	TBP_MAX_TASKS,
	TBP_MAX_TASKS + 1,
};

// gen keeps what the generator wrote that the checks need.
typedef struct gen {
	in              *in;
	msgpack_packer   pk;
	msgpack_sbuffer *sb;
	uint8_t         *fill;         // HUGE_LEN bytes for long strings
	bool             out_of_range; // an int outside its field's range
	unsigned         depth;
	size_t           budget;  // long-string bytes left
	const char      *key;     // of the field being written
	char             why[96]; // the first out-of-range field
} gen;

// in_range is true when the integer v (negative: neg, else u) fits kind.
static bool
in_range(enum fkind kind, bool neg, uint64_t u, int64_t v)
{
	switch (kind) {
	case F_ID:
		return (!neg);
	case F_U32:
		return (!neg && u <= UINT32_MAX);
	case F_I32:
		return (neg ? v >= INT32_MIN : u <= INT32_MAX);
	case F_TIME:
		return (neg ? v >= -TBP_MAX_TIME_US
		            : u <= (uint64_t) TBP_MAX_TIME_US);
	case F_DUR:
		return (!neg && u <= (uint64_t) TBP_MAX_DURATION_MS);
	case F_TMO:
		return (neg ? v >= TBP_MIN_TIMEOUT_MS
		            : u <= (uint64_t) TBP_MAX_DURATION_MS);
	case F_STATE:
		return (!neg && u < TBP_NSTATES);
	default:
		return (true); // not an integer field
	}
}

static void gen_any(gen *g);

static void
gen_str(gen *g, bool bin, uint32_t len, uint8_t c)
{
	uint8_t small[64];

	if (len > sizeof(small)) {
		// A thousand tasks of 8 MiB each would take 8 GiB: past the
		// budget a long string becomes a short one.
		if (len > g->budget) {
			len = sizeof(small);
		} else {
			g->budget -= len;
		}
	}
	if (len <= sizeof(small)) {
		memset(small, c, len);
		if (len > 2 && in_pick(g->in, 8) == 7) {
			small[len / 2] = 0; // a NUL inside a name
		}
	}
	if (bin) {
		msgpack_pack_bin_with_body(
		    &g->pk, len <= sizeof(small) ? small : g->fill, len);
	} else {
		msgpack_pack_str_with_body(
		    &g->pk, len <= sizeof(small) ? small : g->fill, len);
	}
}

// gen_int writes an integer of the field's kind, at or past a limit, and
// notes whether it is out of range.
static void
gen_int(gen *g, enum fkind kind)
{
	unsigned c = in_pick(g->in, 4);

	if (c < 3) {
		uint64_t u = pos_ints[in_pick(
		    g->in, sizeof(pos_ints) / sizeof(pos_ints[0]))];
		if (kind == F_STATE && c == 0) {
			u = in_pick(g->in, TBP_NSTATES + 1);
		}
		msgpack_pack_uint64(&g->pk, u);
		if (!in_range(kind, false, u, 0) && !g->out_of_range) {
			snprintf(g->why, sizeof(g->why), "%s: %llu", g->key,
			    (unsigned long long) u);
			g->out_of_range = true;
		}
	} else {
		int64_t v = neg_ints[in_pick(
		    g->in, sizeof(neg_ints) / sizeof(neg_ints[0]))];
		msgpack_pack_int64(&g->pk, v);
		if (!in_range(kind, true, 0, v) && !g->out_of_range) {
			snprintf(g->why, sizeof(g->why), "%s: %lld", g->key,
			    (long long) v);
			g->out_of_range = true;
		}
	}
}

// gen_payload writes a payload: a bin holding msgpack (valid, deep,
// trailing bytes or none), or another type.
static void
gen_payload(gen *g)
{
	msgpack_sbuffer sb;
	msgpack_packer  pk;
	unsigned        depth;

	switch (in_pick(g->in, 6)) {
	case 0: // {"ms": N}
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 1);
		msgpack_pack_str_with_body(&pk, "ms", 2);
		msgpack_pack_uint64(&pk,
		    pos_ints[in_pick(
		        g->in, sizeof(pos_ints) / sizeof(pos_ints[0]))]);
		msgpack_pack_bin_with_body(&g->pk, sb.data, sb.size);
		msgpack_sbuffer_destroy(&sb);
		break;
	case 1: // nesting around TBP_MAX_DEPTH
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		depth = TBP_MAX_DEPTH - 2 + in_pick(g->in, 5);
		for (unsigned i = 0; i < depth; i++) {
			msgpack_pack_array(&pk, 1);
		}
		msgpack_pack_nil(&pk);
		msgpack_pack_bin_with_body(&g->pk, sb.data, sb.size);
		msgpack_sbuffer_destroy(&sb);
		break;
	case 2: // two objects
		msgpack_pack_bin_with_body(&g->pk, "\xc0\xc0", 2);
		break;
	case 3: // a string that lies about its length
		msgpack_pack_bin_with_body(&g->pk, "\xdb\xff\xff\xff\xff", 5);
		break;
	case 4:
		gen_str(g, true,
		    str_lens[in_pick(
		        g->in, sizeof(str_lens) / sizeof(str_lens[0]))],
		    0xc0); // nils: valid only when it is one byte
		break;
	default:
		gen_any(g);
		break;
	}
}

static void gen_map(gen *g, const field *fs);

// gen_value writes a value for a field of kind: mostly of the right type
// with an extreme value, sometimes of a wrong type or nil.
static void
gen_value(gen *g, enum fkind kind)
{
	uint32_t n;

	if (in_pick(g->in, 5) == 4) {
		gen_any(g); // any type at all
		return;
	}
	switch (kind) {
	case F_ID:
	case F_U32:
	case F_I32:
	case F_TIME:
	case F_DUR:
	case F_TMO:
	case F_STATE:
		gen_int(g, kind);
		break;
	case F_NAME:
	case F_NAME1:
	case F_KEY:
		gen_str(g, in_pick(g->in, 4) == 3,
		    str_lens[in_pick(
		        g->in, sizeof(str_lens) / sizeof(str_lens[0]))],
		    'q');
		break;
	case F_CRON:
		if (in_pick(g->in, 2) == 0) {
			static const char *const crons[] = { "* * * * *",
				"0 3 * * *", "*/0 * * * *", "59 23 31 12 *",
				"0 0 29 2 *", "60 * * * *", "" };
			const char              *c = crons[in_pick(g->in, 7)];
			msgpack_pack_str_with_body(&g->pk, c, strlen(c));
		} else {
			gen_str(g, false,
			    str_lens[in_pick(g->in,
			        sizeof(str_lens) / sizeof(str_lens[0]))],
			    '*');
		}
		break;
	case F_PAYLOAD:
		gen_payload(g);
		break;
	case F_SID:
		n = in_pick(g->in, 4) == 0 ? TB_SID_LEN : in_pick(g->in, 40);
		gen_str(g, true, n, (uint8_t) in_byte(g->in));
		break;
	case F_BOOL:
		if (in_pick(g->in, 2) == 0) {
			msgpack_pack_true(&g->pk);
		} else {
			msgpack_pack_false(&g->pk);
		}
		break;
	case F_TASKS:
		n = count_lens[in_pick(
		    g->in, sizeof(count_lens) / sizeof(count_lens[0]))];
		msgpack_pack_array(&g->pk, n);
		for (uint32_t i = 0; i < n; i++) {
			gen_map(g, f_task);
		}
		break;
	case F_SCHED:
		gen_map(g, f_sched);
		break;
	case F_NAMES:
		n = count_lens[in_pick(
		    g->in, sizeof(count_lens) / sizeof(count_lens[0]))];
		msgpack_pack_array(&g->pk, n);
		for (uint32_t i = 0; i < n; i++) {
			gen_value(g, F_NAME1);
		}
		break;
	case F_RESULTS:
		n = count_lens[in_pick(
		    g->in, sizeof(count_lens) / sizeof(count_lens[0]))];
		msgpack_pack_array(&g->pk, n);
		for (uint32_t i = 0; i < n; i++) {
			gen_map(g, f_result);
		}
		break;
	case F_IDS:
		n = count_lens[in_pick(
		    g->in, sizeof(count_lens) / sizeof(count_lens[0]))];
		msgpack_pack_array(&g->pk, n);
		for (uint32_t i = 0; i < n; i++) {
			gen_value(g, F_ID);
		}
		break;
	}
}

// gen_any writes a value of a type picked at random: the wrong type for
// most fields.
static void
gen_any(gen *g)
{
	static const double dbls[] = { 0.0, -0.0, 1.5, -1.0, 1e300,
		9223372036854775808.0, 18446744073709551616.0 };
	uint32_t            n;

	if (g->depth >= MAX_NEST) {
		msgpack_pack_nil(&g->pk);
		return;
	}
	switch (in_pick(g->in, 11)) {
	case 0:
		msgpack_pack_nil(&g->pk);
		break;
	case 1:
		msgpack_pack_true(&g->pk);
		break;
	case 2:
		msgpack_pack_uint64(&g->pk,
		    pos_ints[in_pick(
		        g->in, sizeof(pos_ints) / sizeof(pos_ints[0]))]);
		break;
	case 3:
		msgpack_pack_int64(&g->pk,
		    neg_ints[in_pick(
		        g->in, sizeof(neg_ints) / sizeof(neg_ints[0]))]);
		break;
	case 4:
		msgpack_pack_double(&g->pk,
		    dbls[in_pick(g->in, sizeof(dbls) / sizeof(dbls[0]))]);
		break;
	case 5:
		msgpack_pack_float(&g->pk, in_pick(g->in, 2) ? NAN : INFINITY);
		break;
	case 6:
		gen_str(g, false,
		    str_lens[in_pick(
		        g->in, sizeof(str_lens) / sizeof(str_lens[0]))],
		    'x');
		break;
	case 7:
		gen_str(g, true, in_pick(g->in, 20), 0xff);
		break;
	case 8: // an array, nested
		n = in_pick(g->in, 4);
		msgpack_pack_array(&g->pk, n);
		g->depth++;
		for (uint32_t i = 0; i < n; i++) {
			gen_any(g);
		}
		g->depth--;
		break;
	case 9: // a map with keys of any type, nested
		n = in_pick(g->in, 4);
		msgpack_pack_map(&g->pk, n);
		g->depth++;
		for (uint32_t i = 0; i < n; i++) {
			gen_any(g);
			gen_any(g);
		}
		g->depth--;
		break;
	default:
		msgpack_pack_ext_with_body(&g->pk, "\x01\x02", 2, 5);
		break;
	}
}

// gen_map writes a map of the fields fs, each present or not (or nil, which
// counts as absent), and now and then a stray key.
static void
gen_map(gen *g, const field *fs)
{
	bool     present[16] = { false };
	uint32_t n           = 0;
	uint32_t extra       = in_pick(g->in, 8) == 7 ? 1 : 0;
	size_t   nf          = 0;

	if (g->depth >= MAX_NEST) {
		msgpack_pack_nil(&g->pk);
		return;
	}
	for (; fs[nf].key != NULL; nf++) {
		// Choice 0 keeps the field: all-zero input writes them all.
		present[nf] = in_pick(g->in, 4) != 3;
		n += present[nf];
	}
	msgpack_pack_map(&g->pk, n + extra);
	g->depth++;
	for (size_t i = 0; i < nf; i++) {
		if (!present[i]) {
			continue;
		}
		msgpack_pack_str_with_body(
		    &g->pk, fs[i].key, strlen(fs[i].key));
		if (in_pick(g->in, 16) == 15) {
			msgpack_pack_nil(&g->pk); // nil counts as absent
		} else {
			g->key = fs[i].key;
			gen_value(g, fs[i].kind);
		}
	}
	if (extra) {
		static const char *const strays[] = { "timeout_ms", "id",
			"min_age_ms", "run_at", "every_ms", "next_at", "zz" };
		const char              *k        = strays[in_pick(g->in, 7)];
		msgpack_pack_str_with_body(&g->pk, k, strlen(k));
		gen_any(g);
	}
	g->depth--;
}

// check_ranges: every number of a decoded request within its range.
static void
check_ranges(const tbp_req *r)
{
	REQUIRE(r->op < TBP_OP_COUNT);
	REQUIRE(r->ntasks <= TBP_MAX_TASKS);
	REQUIRE(r->op != TBP_OP_SUBMIT || r->ntasks >= 1);
	REQUIRE(r->timeout_ms == -1 ||
	    (r->timeout_ms >= TBP_MIN_TIMEOUT_MS &&
	        r->timeout_ms <= TBP_MAX_DURATION_MS));
	REQUIRE(r->state >= -1 && r->state < TBP_NSTATES);
	REQUIRE(r->min_age_ms <= (uint64_t) TBP_MAX_DURATION_MS);
	REQUIRE(r->max_age_ms <= (uint64_t) TBP_MAX_DURATION_MS);
	REQUIRE(r->queue.n <= TBP_MAX_NAME && r->handler.n <= TBP_MAX_NAME);
	REQUIRE(r->name.n <= TBP_MAX_NAME);
	for (uint32_t i = 0; i < r->ntasks; i++) {
		const tbp_task_in *t = &r->tasks[i];

		REQUIRE(t->sid.n == TB_SID_LEN);
		REQUIRE(t->handler.n >= 1 && t->handler.n <= TBP_MAX_NAME);
		REQUIRE(t->queue.n <= TBP_MAX_NAME);
		REQUIRE(t->payload.n <= TBP_MAX_PAYLOAD);
		REQUIRE(t->key.n <= TBP_MAX_KEY);
		REQUIRE(t->run_at >= -TBP_MAX_TIME_US &&
		    t->run_at <= TBP_MAX_TIME_US);
	}
	if (r->op == TBP_OP_WORKER_HELLO) {
		const tbp_hello *h = &r->hello;

		REQUIRE(h->nhandlers >= 1 && h->nhandlers <= TBP_MAX_WNAMES);
		REQUIRE(h->nqueues <= TBP_MAX_WNAMES);
		REQUIRE(h->slots >= 1 && h->slots <= TBP_MAX_SLOTS);
		for (uint32_t i = 0; i < h->nhandlers; i++) {
			REQUIRE(h->handlers[i].n >= 1 &&
			    h->handlers[i].n <= TBP_MAX_NAME);
		}
		for (uint32_t i = 0; i < h->nqueues; i++) {
			REQUIRE(h->queues[i].n >= 1 &&
			    h->queues[i].n <= TBP_MAX_NAME);
		}
	}
	REQUIRE(r->free <= TBP_MAX_SLOTS);
	REQUIRE(r->done.result.n <= TBP_MAX_RESULT);
	REQUIRE(r->done.error.n <= TBP_MAX_ERROR);
	REQUIRE(r->nids <= TBP_MAX_SLOTS && (r->nids == 0 || r->ids != NULL));
	REQUIRE(r->nresults <= TBP_MAX_SLOTS);
	for (uint32_t i = 0; i < r->nresults; i++) {
		REQUIRE(r->results[i].result.n <= TBP_MAX_RESULT);
		REQUIRE(r->results[i].error.n <= TBP_MAX_ERROR);
	}
	if (r->op == TBP_OP_SCHED_ADD) {
		const tbp_sched *s = &r->sched;

		REQUIRE(s->name.n >= 1 && s->name.n <= TBP_MAX_NAME);
		REQUIRE(s->handler.n >= 1 && s->handler.n <= TBP_MAX_NAME);
		REQUIRE(s->queue.n <= TBP_MAX_NAME);
		REQUIRE(s->cron.n <= TBP_MAX_CRON);
		REQUIRE(s->payload.n <= TBP_MAX_PAYLOAD);
		REQUIRE(s->every_ms <= (uint64_t) TBP_MAX_DURATION_MS);
		REQUIRE((s->every_ms != 0) != (s->cron.n > 0));
		REQUIRE(s->next_at == 0 && s->last_at == 0 && s->fired == 0);
	}
}

// check_arith runs the broker's arithmetic on the decoded numbers at a
// clock of now (Unix µs) and checks its results.
static void
check_arith(const tbp_req *r, int64_t now)
{
	int64_t v;

	switch (r->op) {
	case TBP_OP_LIST:
		if (r->min_age_ms > 0) {
			REQUIRE(sched_age_cutoff(now, r->min_age_ms) < now);
		}
		if (r->max_age_ms > 0) {
			REQUIRE(sched_age_cutoff(now, r->max_age_ms) < now);
		}
		break;
	case TBP_OP_PURGE:
		if (r->min_age_ms > 0) {
			REQUIRE(sched_age_cutoff(now, r->min_age_ms) < now);
		}
		break;
	case TBP_OP_WAIT:
	case TBP_OP_DRAIN:
		v = sched_hold_ms(r->timeout_ms, HOLD_MAX_MS);
		REQUIRE(v >= 0 && v <= HOLD_MAX_MS);
		break;
	case TBP_OP_SUBMIT:
		for (uint32_t i = 0; i < r->ntasks; i++) {
			const tbp_task_in *t = &r->tasks[i];

			v = sched_run_at(now, t->run_at, t->delay_ms);
			REQUIRE(t->run_at > 0 ? v == t->run_at : v >= now);
		}
		break;
	case TBP_OP_SCHED_ADD:
		if (r->sched.every_ms > 0) {
			int64_t every = sched_every_us(r->sched.every_ms);
			int64_t due   = now + every; // handle_sched_add
			int64_t next;

			REQUIRE(every > 0 && due > now);
			// A broker that comes back three periods late.
			next =
			    sched_next_due(every, NULL, due, due + 3 * every);
			REQUIRE(next > due + 3 * every);
			next = sched_next_due(every, NULL, due, due);
			REQUIRE(next == due + every);
		}
		break;
	default:
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t      *fill;
	static const int64_t nows[] = { 0, 1800000000000000LL, TBP_MAX_TIME_US,
		-TBP_MAX_TIME_US };
	in                   s      = { data, size, 0 };
	msgpack_sbuffer      sb;
	gen                  g;
	tbp_req              r;
	uint32_t             op;
	size_t               len;
	unsigned             c;
	bool                 loose = false; // the op is not the one picked
	bool                 bad   = false; // the buffer is cut or padded
	int                  rv;

	if (fill == NULL) {
		// Long strings share one buffer of HUGE_LEN 'x's, made once.
		REQUIRE((fill = malloc(HUGE_LEN)) != NULL);
		memset(fill, 'x', HUGE_LEN);
	}
	memset(&g, 0, sizeof(g));
	g.in     = &s;
	g.fill   = fill;
	g.budget = BUDGET;
	g.sb     = &sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&g.pk, &sb, msgpack_sbuffer_write);

	// The envelope: mostly right, now and then wrong in one place.
	op = in_pick(&s, TBP_OP_COUNT);
	c  = in_pick(&s, 16);
	msgpack_pack_array(&g.pk, c == 15 ? 3 : 4);
	if (c == 14) {
		gen_any(&g);
	} else {
		msgpack_pack_uint32(
		    &g.pk, c == 13 ? TBP_VERSION + 1 : TBP_VERSION);
	}
	if (c == 12) {
		msgpack_pack_uint32(&g.pk, TBP_OP_COUNT + in_byte(&s));
	} else if (c == 11) {
		gen_any(&g); // it may even be an op: the body is another's
		loose = true;
	} else {
		msgpack_pack_uint32(&g.pk, op);
	}
	if (c == 10) {
		gen_any(&g);
	} else {
		msgpack_pack_uint64(&g.pk,
		    pos_ints[in_pick(
		        &s, sizeof(pos_ints) / sizeof(pos_ints[0]))]);
	}
	if (c == 9) {
		gen_any(&g); // a body that is no map
	} else if (c != 15) {
		gen_map(&g, op_fields[op]);
	}

	// Now and then a cut or padded buffer.
	len = sb.size;
	c   = in_pick(&s, 16);
	if (c == 15 && len > 0) {
		len -= 1 + in_pick(&s, (unsigned) (len < 255 ? len : 255));
		bad = true;
	} else if (c == 14) {
		msgpack_pack_nil(&g.pk);
		len = sb.size;
		bad = true;
	}

	rv = tbp_req_decode(&r, sb.data, len);
	if (rv != TB_OK) {
		REQUIRE(rv == TB_EBADREQ || rv == TB_ETOOBIG ||
		    rv == TB_EVERSION || rv == TB_EUNKNOWNOP);
	} else {
		// A cut message is incomplete; a padded one has trailing
		// bytes.
		REQUIRE(!bad);
		REQUIRE(r.have_envelope && r.version == TBP_VERSION);
		// The broker's arithmetic first: a value that slipped
		// through fails there (an assert, or UBSan's overflow check)
		// as it would in the broker.
		for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
			check_arith(&r, nows[i]);
		}
		check_ranges(&r);
		// An integer out of its field's range must not get through.
		if (!loose && g.out_of_range) {
			fprintf(stderr, "decoded with %s (op %s)\n", g.why,
			    tbp_op_name(op));
		}
		REQUIRE(loose || (r.op == op && !g.out_of_range));
	}
	tbp_req_fini(&r);
	msgpack_sbuffer_destroy(&sb);
	return (0);
}
