// tbp_decode.c: tbp_check and the request, reply and event decoders.
//
// DESIGN: a message is decoded in three steps. (1) tbp_check walks the raw
// bytes without allocating and proves that they hold exactly one msgpack
// object whose every length fits in the buffer, whose nesting is bounded,
// and whose object count is bounded. (2) Only then are the bytes copied
// into memory the message owns and unpacked by msgpack-c, whose unpacker
// trusts length prefixes and would otherwise reserve whatever a hostile
// header asks for. (3) The object tree is read into the C structs; every
// string and byte field is a view into the copy.
//
// The copy is needed because msgpack-c's unpacked strings point into the
// buffer they were unpacked from, and tbp.h promises that the caller's
// buffer need not outlive the message. The copy is tied to the msgpack zone
// with a finalizer, so msgpack_unpacked_destroy frees both, and so do the
// arrays of tasks, ids, schedules and queues, which are allocated in the
// same zone.
//
// Field readers report TB_EBADREQ (malformed) or TB_ETOOBIG (over a limit);
// the reply and event decoders map those to their own codes at the end.

#include <stdlib.h>
#include <string.h>

#include "tbp.h"

// TBP_CHECK_STACK is the deepest nesting tbp_check can follow; a larger
// max_depth acts as this one. It is far above TBP_MAX_DEPTH and msgpack-c's
// own limit of 32, and keeps the walker's stack to 2 KiB.
#define TBP_CHECK_STACK 256u

// TBP_MAX_OBJECTS_ bounds the objects (keys and values) in one message.
// msgpack-c spends 24 bytes per object, so without it an 8 MiB message of
// one-byte objects in an ignored field would cost about 200 MiB to unpack.
// A full list reply or submit has about 25,000 objects; this leaves room
// for fields added later and caps the unpacked tree at about 6 MiB.
#define TBP_MAX_OBJECTS_ (1u << 18)

// TBP_MAX_TOPIC_ is the longest event topic: "tb." and three names with
// their dots, plus slack for the event name.
#define TBP_MAX_TOPIC_ (3u * TBP_MAX_NAME + 16u)

static uint64_t
load_be(const uint8_t *p, size_t k)
{
	uint64_t v = 0;

	for (size_t i = 0; i < k; i++) {
		v = (v << 8) | p[i];
	}
	return (v);
}

// check_walk is tbp_check, also counting the objects it saw in *nobjp.
// It keeps one counter per open container instead of recursing, so a deep
// input cannot exhaust the C stack, and a running total of the objects
// still owed: each needs at least one byte, so a header that promises more
// than the remaining bytes can hold is rejected at once.
static int
check_walk(const uint8_t *p, size_t len, unsigned max_depth, size_t *usedp,
    size_t *nobjp)
{
	uint64_t left[TBP_CHECK_STACK]; // children still owed, per container
	unsigned depth   = 0;
	size_t   pos     = 0;
	uint64_t pending = 1; // objects still owed at every level
	size_t   nobj    = 0;

	if (max_depth > TBP_CHECK_STACK) {
		max_depth = TBP_CHECK_STACK;
	}
	if (p == NULL) {
		return (TB_EBADREQ);
	}
	for (;;) {
		uint8_t  b;
		uint64_t body  = 0; // bytes after the header and length field
		uint64_t nelem = 0; // children of a container (2 per map pair)
		uint64_t extra = 0; // the type byte of an ext
		size_t   k     = 0; // size of the big-endian length field
		bool     cont  = false;
		bool     map   = false;

		if (pos >= len) {
			return (TB_EBADREQ);
		}
		b = p[pos++];
		pending--;
		nobj++;
		if (b <= 0x7f || b >= 0xe0) {
			// positive or negative fixint: the header is the value
		} else if (b <= 0x8f) {
			cont  = true;
			nelem = 2u * (b & 0x0fu);
		} else if (b <= 0x9f) {
			cont  = true;
			nelem = b & 0x0fu;
		} else if (b <= 0xbf) {
			body = b & 0x1fu;
		} else {
			switch (b) {
			case 0xc0: // nil
			case 0xc2: // false
			case 0xc3: // true
				break;
			case 0xc4: // bin 8, 16, 32
			case 0xd9: // str 8, 16, 32
				k = 1;
				break;
			case 0xc5:
			case 0xda:
				k = 2;
				break;
			case 0xc6:
			case 0xdb:
				k = 4;
				break;
			case 0xc7: // ext 8, 16, 32: length, type, data
				k     = 1;
				extra = 1;
				break;
			case 0xc8:
				k     = 2;
				extra = 1;
				break;
			case 0xc9:
				k     = 4;
				extra = 1;
				break;
			case 0xcc: // uint 8
			case 0xd0: // int 8
				body = 1;
				break;
			case 0xcd:
			case 0xd1:
				body = 2;
				break;
			case 0xca: // float 32
			case 0xce:
			case 0xd2:
				body = 4;
				break;
			case 0xcb: // float 64
			case 0xcf:
			case 0xd3:
				body = 8;
				break;
			case 0xd4: // fixext 1, 2, 4, 8, 16: type, data
				body = 2;
				break;
			case 0xd5:
				body = 3;
				break;
			case 0xd6:
				body = 5;
				break;
			case 0xd7:
				body = 9;
				break;
			case 0xd8:
				body = 17;
				break;
			case 0xdc: // array 16, 32
				cont = true;
				k    = 2;
				break;
			case 0xdd:
				cont = true;
				k    = 4;
				break;
			case 0xde: // map 16, 32
				cont = true;
				map  = true;
				k    = 2;
				break;
			case 0xdf:
				cont = true;
				map  = true;
				k    = 4;
				break;
			default: // 0xc1 is reserved and never valid
				return (TB_EBADREQ);
			}
		}
		if (k > 0) {
			uint64_t v;

			if (len - pos < k) {
				return (TB_EBADREQ);
			}
			v = load_be(p + pos, k);
			pos += k;
			if (cont) {
				nelem = map ? 2 * v : v;
			} else {
				body = v + extra;
			}
		}
		if (body > len - pos) {
			return (TB_EBADREQ);
		}
		pos += (size_t) body;
		// Keeps pending <= len - pos true, which the subtraction below
		// relies on.
		if (pending > len - pos) {
			return (TB_EBADREQ);
		}
		if (cont) {
			// An empty container counts too, as it does in
			// msgpack-c, so whatever passes here also unpacks.
			if (depth >= max_depth) {
				return (TB_ETOOBIG);
			}
			if (nelem > 0) {
				if (nelem > (len - pos) - pending) {
					return (TB_EBADREQ);
				}
				left[depth++] = nelem;
				pending += nelem;
				continue;
			}
		}
		// An object is complete; it may complete its containers too.
		while (depth > 0 && --left[depth - 1] == 0) {
			depth--;
		}
		if (depth == 0) {
			break;
		}
	}
	if (usedp != NULL) {
		*usedp = pos;
	}
	*nobjp = nobj;
	return (TB_OK);
}

int
tbp_check(const void *buf, size_t len, unsigned max_depth, size_t *usedp)
{
	size_t nobj;

	return (check_walk(buf, len, max_depth, usedp, &nobj));
}

// unpack checks buf[off..len) as exactly one object and unpacks it from a
// copy of buf[0..len) owned by u's zone. *copyp receives the copy.
static int
unpack(msgpack_unpacked *u, const void *buf, size_t len, size_t off,
    const uint8_t **copyp)
{
	char  *copy;
	size_t used;
	size_t nobj;
	int    rv;

	if (len > TBP_MAX_MSG) {
		return (TB_ETOOBIG);
	}
	if (buf == NULL || off >= len) {
		return (TB_EBADREQ);
	}
	rv = check_walk((const uint8_t *) buf + off, len - off, TBP_MAX_DEPTH,
	    &used, &nobj);
	if (rv != TB_OK) {
		return (rv);
	}
	if (used != len - off) {
		return (TB_EBADREQ); // trailing bytes
	}
	if (nobj > TBP_MAX_OBJECTS_) {
		return (TB_ETOOBIG);
	}
	if ((copy = malloc(len)) == NULL) {
		return (TB_ENOMEM);
	}
	memcpy(copy, buf, len);
	used = off; // msgpack_unpack_next starts at *off
	switch (msgpack_unpack_next(u, copy, len, &used)) {
	case MSGPACK_UNPACK_SUCCESS:
		break;
	case MSGPACK_UNPACK_NOMEM_ERROR:
		free(copy);
		return (TB_ENOMEM);
	default:
		// Cannot happen after check_walk; refuse rather than guess.
		free(copy);
		return (TB_EBADREQ);
	}
	// A lone scalar needs no zone, but the copy needs an owner.
	if (u->zone == NULL &&
	    (u->zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE)) == NULL) {
		free(copy);
		return (TB_ENOMEM);
	}
	if (!msgpack_zone_push_finalizer(u->zone, free, copy)) {
		free(copy);
		return (TB_ENOMEM);
	}
	*copyp = (const uint8_t *) copy; // the zone owns the copy from here
	if (used != len) {
		return (TB_EBADREQ); // as above: check_walk rules this out
	}
	return (TB_OK);
}

// zalloc returns n zeroed elements of size sz from u's zone, or NULL.
static void *
zalloc(msgpack_unpacked *u, size_t n, size_t sz)
{
	void *p;

	if (n == 0) {
		return (NULL);
	}
	if ((p = msgpack_zone_malloc(u->zone, n * sz)) != NULL) {
		memset(p, 0, n * sz);
	}
	return (p);
}

// Field readers. Each takes a non-nil object: a nil value is treated as an
// absent field by the callers, which is what most msgpack libraries send for
// a null option.

static bool
key_is(const msgpack_object *k, const char *s)
{
	size_t n = strlen(s);

	return (k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0);
}

// map_check accepts a map whose keys are all strings.
static int
map_check(const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_MAP) {
		return (TB_EBADREQ);
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		if (o->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR) {
			return (TB_EBADREQ);
		}
	}
	return (TB_OK);
}

static int
get_u64(const msgpack_object *o, uint64_t max, uint64_t *vp)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max) {
		return (TB_EBADREQ);
	}
	*vp = o->via.u64;
	return (TB_OK);
}

static int
get_u32(const msgpack_object *o, uint32_t *vp)
{
	uint64_t v;
	int      rv;

	if ((rv = get_u64(o, UINT32_MAX, &v)) == TB_OK) {
		*vp = (uint32_t) v;
	}
	return (rv);
}

static int
get_i64(const msgpack_object *o, int64_t min, int64_t max, int64_t *vp)
{
	int64_t v;

	switch (o->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t) max) {
			return (TB_EBADREQ);
		}
		v = (int64_t) o->via.u64;
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		v = o->via.i64;
		break;
	default:
		return (TB_EBADREQ);
	}
	if (v < min || v > max) {
		return (TB_EBADREQ);
	}
	*vp = v;
	return (TB_OK);
}

static int
get_i32(const msgpack_object *o, int32_t *vp)
{
	int64_t v;
	int     rv;

	if ((rv = get_i64(o, INT32_MIN, INT32_MAX, &v)) == TB_OK) {
		*vp = (int32_t) v;
	}
	return (rv);
}

static int
get_bool(const msgpack_object *o, bool *vp)
{
	if (o->type != MSGPACK_OBJECT_BOOLEAN) {
		return (TB_EBADREQ);
	}
	*vp = o->via.boolean;
	return (TB_OK);
}

// get_bytes accepts str and bin alike: older msgpack libraries have only
// the str ("raw") family.
static int
get_bytes(const msgpack_object *o, uint32_t max, tbp_bytes *vp)
{
	tbp_bytes v;

	if (o->type == MSGPACK_OBJECT_STR) {
		v.p = (const uint8_t *) o->via.str.ptr;
		v.n = o->via.str.size;
	} else if (o->type == MSGPACK_OBJECT_BIN) {
		v.p = (const uint8_t *) o->via.bin.ptr;
		v.n = o->via.bin.size;
	} else {
		return (TB_EBADREQ);
	}
	if (v.n > max) {
		return (TB_ETOOBIG);
	}
	*vp = v;
	return (TB_OK);
}

// get_name reads a queue, handler or event name. A NUL is refused because
// names become C strings in the broker and the client, and end up in event
// topics, where a NUL would end the topic early.
static int
get_name(const msgpack_object *o, uint32_t min, tbp_bytes *vp)
{
	tbp_bytes v;
	int       rv;

	if ((rv = get_bytes(o, TBP_MAX_NAME, &v)) != TB_OK) {
		return (rv);
	}
	if (v.n < min || (v.n > 0 && memchr(v.p, 0, v.n) != NULL)) {
		return (TB_EBADREQ);
	}
	*vp = v;
	return (TB_OK);
}

// get_text reads an idempotency key or a cron expression: min..max bytes
// and no NUL, for the same reason as names. Over max is TB_ETOOBIG.
static int
get_text(const msgpack_object *o, uint32_t min, uint32_t max, tbp_bytes *vp)
{
	tbp_bytes v;
	int       rv;

	if ((rv = get_bytes(o, max, &v)) != TB_OK) {
		return (rv);
	}
	if (v.n < min || (v.n > 0 && memchr(v.p, 0, v.n) != NULL)) {
		return (TB_EBADREQ);
	}
	*vp = v;
	return (TB_OK);
}

// get_payload reads a task's or schedule's payload. It is opaque to the
// broker, but it must be one sane object for the handler.
static int
get_payload(const msgpack_object *o, tbp_bytes *vp)
{
	tbp_bytes v;
	size_t    used;
	int       rv;

	if ((rv = get_bytes(o, TBP_MAX_PAYLOAD, &v)) != TB_OK) {
		return (rv);
	}
	if (v.n > 0) {
		rv = tbp_check(v.p, v.n, TBP_MAX_DEPTH, &used);
		if (rv != TB_OK) {
			return (rv);
		}
		if (used != v.n) {
			return (TB_EBADREQ);
		}
	}
	*vp = v;
	return (TB_OK);
}

// get_state reads a task state filter, which tbp_req keeps as an int32_t:
// one of the TBP_NSTATES states. A value that is no state is refused here
// like any other number out of its range (fuzz_tbp_struct found it
// accepted up to INT32_MAX, to match nothing).
static int
get_state(const msgpack_object *o, int32_t *vp)
{
	uint64_t u;
	int      rv;

	if ((rv = get_u64(o, TBP_NSTATES - 1, &u)) == TB_OK) {
		*vp = (int32_t) u;
	}
	return (rv);
}

// envelope reads [version, op, req_id, ...] and checks the version and op.
// It sets the fields as soon as they are read, so the caller can mirror
// req_id in an error reply even when the rest is bad.
static int
envelope(const msgpack_object *o, uint32_t *versionp, uint32_t *opp,
    uint64_t *req_idp, bool *havep)
{
	const msgpack_object *a;

	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3) {
		return (TB_EBADREQ);
	}
	a = o->via.array.ptr;
	if (get_u32(&a[0], versionp) != TB_OK ||
	    get_u32(&a[1], opp) != TB_OK ||
	    get_u64(&a[2], UINT64_MAX, req_idp) != TB_OK) {
		return (TB_EBADREQ);
	}
	*havep = true;
	if (*versionp == 0) {
		return (TB_EBADREQ);
	}
	if (*versionp > TBP_VERSION) {
		return (TB_EVERSION);
	}
	if (*opp >= TBP_OP_COUNT) {
		return (TB_EUNKNOWNOP);
	}
	return (TB_OK);
}

// Requests.

static int
dec_task_in(tbp_task_in *t, const msgpack_object *o)
{
	bool have_sid     = false;
	bool have_handler = false;
	int  rv;

	if ((rv = map_check(o)) != TB_OK) {
		return (rv);
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "sid")) {
			rv = get_bytes(v, UINT32_MAX, &t->sid);
			if (rv == TB_OK && t->sid.n != TB_SID_LEN) {
				rv = TB_EBADREQ;
			}
			have_sid = true;
		} else if (key_is(k, "handler")) {
			rv           = get_name(v, 1, &t->handler);
			have_handler = true;
		} else if (key_is(k, "queue")) {
			rv = get_name(v, 0, &t->queue);
		} else if (key_is(k, "payload")) {
			rv = get_payload(v, &t->payload);
		} else if (key_is(k, "priority")) {
			rv = get_i32(v, &t->priority);
		} else if (key_is(k, "max_attempts")) {
			rv = get_u32(v, &t->max_attempts);
		} else if (key_is(k, "timeout_ms")) {
			rv = get_u32(v, &t->timeout_ms);
		} else if (key_is(k, "delay_ms")) {
			rv = get_u32(v, &t->delay_ms);
		} else if (key_is(k, "run_at")) {
			rv = get_i64(
			    v, -TBP_MAX_TIME_US, TBP_MAX_TIME_US, &t->run_at);
		} else if (key_is(k, "key")) {
			rv = get_text(v, 1, TBP_MAX_KEY, &t->key);
		} else if (key_is(k, "forever")) {
			rv = get_bool(v, &t->forever);
		} else if (key_is(k, "max_crashes")) {
			rv = get_u32(v, &t->max_crashes);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	if (!have_sid || !have_handler) {
		return (TB_EBADREQ);
	}
	return (TB_OK);
}

static int
dec_submit(tbp_req *r, const msgpack_object *body)
{
	const msgpack_object *tasks = NULL;
	uint32_t              n;
	int                   rv;

	for (uint32_t i = 0; i < body->via.map.size; i++) {
		if (key_is(&body->via.map.ptr[i].key, "tasks") &&
		    body->via.map.ptr[i].val.type != MSGPACK_OBJECT_NIL) {
			tasks = &body->via.map.ptr[i].val;
		}
	}
	if (tasks == NULL || tasks->type != MSGPACK_OBJECT_ARRAY ||
	    tasks->via.array.size == 0) {
		return (TB_EBADREQ);
	}
	if ((n = tasks->via.array.size) > TBP_MAX_TASKS) {
		return (TB_ETOOBIG);
	}
	if ((r->tasks = zalloc(&r->priv_, n, sizeof(*r->tasks))) == NULL) {
		return (TB_ENOMEM);
	}
	for (uint32_t i = 0; i < n; i++) {
		if ((rv = dec_task_in(
		         &r->tasks[i], &tasks->via.array.ptr[i])) != TB_OK) {
			return (rv);
		}
	}
	r->ntasks = n;
	return (TB_OK);
}

// dec_req_fields reads the bodies of status, cancel, wait and list; each
// op looks only at its own keys.
static int
dec_req_fields(tbp_req *r, const msgpack_object *body)
{
	bool want_id = (r->op == TBP_OP_STATUS || r->op == TBP_OP_CANCEL ||
	    r->op == TBP_OP_WAIT);
	bool have_id = false;
	int  rv      = TB_OK;

	for (uint32_t i = 0; i < body->via.map.size; i++) {
		const msgpack_object *k = &body->via.map.ptr[i].key;
		const msgpack_object *v = &body->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (want_id && key_is(k, "id")) {
			rv      = get_u64(v, UINT64_MAX, &r->id);
			have_id = true;
		} else if (r->op == TBP_OP_WAIT && key_is(k, "timeout_ms")) {
			rv = get_i64(v, TBP_MIN_TIMEOUT_MS,
			    TBP_MAX_DURATION_MS, &r->timeout_ms);
		} else if (r->op == TBP_OP_LIST && key_is(k, "queue")) {
			rv = get_name(v, 0, &r->queue);
		} else if (r->op == TBP_OP_LIST && key_is(k, "state")) {
			rv = get_state(v, &r->state);
		} else if (r->op == TBP_OP_LIST && key_is(k, "limit")) {
			rv = get_u32(v, &r->limit);
		} else if (r->op == TBP_OP_LIST && key_is(k, "after_id")) {
			rv = get_u64(v, UINT64_MAX, &r->after_id);
		} else if (r->op == TBP_OP_LIST && key_is(k, "handler")) {
			rv = get_name(v, 0, &r->handler);
		} else if (r->op == TBP_OP_LIST && key_is(k, "min_age_ms")) {
			rv = get_u64(v, TBP_MAX_DURATION_MS, &r->min_age_ms);
		} else if (r->op == TBP_OP_LIST && key_is(k, "max_age_ms")) {
			rv = get_u64(v, TBP_MAX_DURATION_MS, &r->max_age_ms);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	if (want_id && !have_id) {
		return (TB_EBADREQ);
	}
	return (TB_OK);
}

// dec_sched reads a schedule. Requests must name exactly one of every_ms
// and cron (an every_ms of 0 or an empty cron counts as absent, as the
// encoders leave them out at those values); only replies carry the
// broker's bookkeeping, which a request may not set.
static int
dec_sched(tbp_sched *s, const msgpack_object *o, bool reply)
{
	bool have_name    = false;
	bool have_handler = false;
	int  rv;

	if ((rv = map_check(o)) != TB_OK) {
		return (rv);
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "name")) {
			rv        = get_name(v, 1, &s->name);
			have_name = true;
		} else if (key_is(k, "handler")) {
			rv           = get_name(v, 1, &s->handler);
			have_handler = true;
		} else if (key_is(k, "queue")) {
			rv = get_name(v, 0, &s->queue);
		} else if (key_is(k, "payload")) {
			rv = get_payload(v, &s->payload);
		} else if (key_is(k, "priority")) {
			rv = get_i32(v, &s->priority);
		} else if (key_is(k, "max_attempts")) {
			rv = get_u32(v, &s->max_attempts);
		} else if (key_is(k, "timeout_ms")) {
			rv = get_u32(v, &s->timeout_ms);
		} else if (key_is(k, "every_ms")) {
			rv = get_u64(v, TBP_MAX_DURATION_MS, &s->every_ms);
		} else if (key_is(k, "cron")) {
			rv = get_text(v, 0, TBP_MAX_CRON, &s->cron);
		} else if (key_is(k, "catch_up")) {
			rv = get_bool(v, &s->catch_up);
		} else if (key_is(k, "paused")) {
			rv = get_bool(v, &s->paused);
		} else if (reply && key_is(k, "next_at")) {
			rv = get_i64(v, INT64_MIN, INT64_MAX, &s->next_at);
		} else if (reply && key_is(k, "last_at")) {
			rv = get_i64(v, INT64_MIN, INT64_MAX, &s->last_at);
		} else if (reply && key_is(k, "fired")) {
			rv = get_u64(v, UINT64_MAX, &s->fired);
		} else if (reply && key_is(k, "last_task")) {
			rv = get_u64(v, UINT64_MAX, &s->last_task);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	if (!have_name || !have_handler) {
		return (TB_EBADREQ);
	}
	if (!reply && (s->every_ms != 0) == (s->cron.n > 0)) {
		return (TB_EBADREQ);
	}
	return (TB_OK);
}

static int
dec_sched_add(tbp_req *r, const msgpack_object *body)
{
	const msgpack_object *sched = NULL;

	for (uint32_t i = 0; i < body->via.map.size; i++) {
		if (key_is(&body->via.map.ptr[i].key, "schedule") &&
		    body->via.map.ptr[i].val.type != MSGPACK_OBJECT_NIL) {
			sched = &body->via.map.ptr[i].val;
		}
	}
	if (sched == NULL) {
		return (TB_EBADREQ);
	}
	return (dec_sched(&r->sched, sched, false));
}

// dec_req_admin reads the bodies of retry, pause, resume, drain, purge,
// schedule_rm and schedule_pause; each op looks only at its own keys.
static int
dec_req_admin(tbp_req *r, const msgpack_object *body)
{
	uint32_t op = r->op;
	bool     by_queue;  // pause, resume: "queue" required, non-empty
	bool     any_queue; // retry, drain, purge: "queue" optional
	bool     by_name;   // schedule_rm, schedule_pause: "name" required
	bool     have_queue = false;
	bool     have_state = false;
	bool     have_name  = false;
	int      rv         = TB_OK;

	by_queue = (op == TBP_OP_PAUSE || op == TBP_OP_RESUME);
	any_queue =
	    (op == TBP_OP_RETRY || op == TBP_OP_DRAIN || op == TBP_OP_PURGE);
	by_name = (op == TBP_OP_SCHED_RM || op == TBP_OP_SCHED_PAUSE);
	for (uint32_t i = 0; i < body->via.map.size; i++) {
		const msgpack_object *k = &body->via.map.ptr[i].key;
		const msgpack_object *v = &body->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if ((by_queue || any_queue) && key_is(k, "queue")) {
			rv         = get_name(v, by_queue ? 1 : 0, &r->queue);
			have_queue = true;
		} else if ((op == TBP_OP_RETRY || op == TBP_OP_PURGE) &&
		    key_is(k, "state")) {
			rv         = get_state(v, &r->state);
			have_state = true;
		} else if (op == TBP_OP_RETRY && key_is(k, "id")) {
			rv         = get_u64(v, UINT64_MAX, &r->id);
			r->have_id = true;
		} else if (op == TBP_OP_DRAIN && key_is(k, "timeout_ms")) {
			rv = get_i64(v, TBP_MIN_TIMEOUT_MS,
			    TBP_MAX_DURATION_MS, &r->timeout_ms);
		} else if (op == TBP_OP_PURGE && key_is(k, "min_age_ms")) {
			rv = get_u64(v, TBP_MAX_DURATION_MS, &r->min_age_ms);
		} else if (by_name && key_is(k, "name")) {
			rv        = get_name(v, 1, &r->name);
			have_name = true;
		} else if (op == TBP_OP_SCHED_PAUSE && key_is(k, "paused")) {
			rv = get_bool(v, &r->paused);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	if ((by_queue && !have_queue) || (by_name && !have_name) ||
	    (op == TBP_OP_PURGE && !have_state)) {
		return (TB_EBADREQ);
	}
	// A retry names one task or a filter, never both: a broker could
	// only guess which one was meant.
	if (r->have_id && (have_queue || have_state)) {
		return (TB_EBADREQ);
	}
	return (TB_OK);
}

// get_names reads an array of 0..TBP_MAX_WNAMES non-empty names into
// views allocated in r's zone.
static int
get_names(
    msgpack_unpacked *u, const msgpack_object *o, tbp_bytes **vp, uint32_t *np)
{
	tbp_bytes *v;
	uint32_t   n;
	int        rv;

	if (o->type != MSGPACK_OBJECT_ARRAY) {
		return (TB_EBADREQ);
	}
	if ((n = o->via.array.size) > TBP_MAX_WNAMES) {
		return (TB_ETOOBIG);
	}
	if (n == 0) {
		*vp = NULL;
		*np = 0;
		return (TB_OK);
	}
	if ((v = zalloc(u, n, sizeof(*v))) == NULL) {
		return (TB_ENOMEM);
	}
	for (uint32_t i = 0; i < n; i++) {
		if ((rv = get_name(&o->via.array.ptr[i], 1, &v[i])) != TB_OK) {
			return (rv);
		}
	}
	*vp = v;
	*np = n;
	return (TB_OK);
}

// dec_done_entry reads one result of a worker_done's "results".
static int
dec_done_entry(tbp_done *d, const msgpack_object *o)
{
	bool have_id = false, have_att = false, have_ok = false;
	int  rv;

	if ((rv = map_check(o)) != TB_OK) {
		return (rv);
	}
	d->retryable = true;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "id")) {
			rv      = get_u64(v, UINT64_MAX, &d->id);
			have_id = true;
		} else if (key_is(k, "attempt")) {
			rv       = get_u32(v, &d->attempt);
			have_att = true;
		} else if (key_is(k, "ok")) {
			rv      = get_bool(v, &d->ok);
			have_ok = true;
		} else if (key_is(k, "result")) {
			rv = get_bytes(v, TBP_MAX_RESULT, &d->result);
		} else if (key_is(k, "error")) {
			rv = get_bytes(v, TBP_MAX_ERROR, &d->error);
		} else if (key_is(k, "retryable")) {
			rv = get_bool(v, &d->retryable);
		} else if (key_is(k, "seq")) {
			rv = get_u64(v, UINT64_MAX, &d->seq);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	return (have_id && have_att && have_ok ? TB_OK : TB_EBADREQ);
}

// dec_req_worker reads the bodies of worker_hello, worker_take,
// worker_done and worker_bye; each op looks only at its own keys.
static int
dec_req_worker(tbp_req *r, const msgpack_object *body)
{
	uint32_t op       = r->op;
	bool     have_wid = false;
	bool     have_id  = false;
	bool     have_att = false;
	bool     have_ok  = false;
	int      rv       = TB_OK;

	r->done.retryable = true;
	for (uint32_t i = 0; i < body->via.map.size; i++) {
		const msgpack_object *k = &body->via.map.ptr[i].key;
		const msgpack_object *v = &body->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (op == TBP_OP_WORKER_HELLO) {
			if (key_is(k, "handlers")) {
				rv = get_names(&r->priv_, v,
				    &r->hello.handlers, &r->hello.nhandlers);
			} else if (key_is(k, "queues")) {
				rv = get_names(&r->priv_, v, &r->hello.queues,
				    &r->hello.nqueues);
			} else if (key_is(k, "slots")) {
				rv = get_u32(v, &r->hello.slots);
			} else if (key_is(k, "pid")) {
				rv = get_u64(v, UINT32_MAX, &r->hello.pid);
			} else if (key_is(k, "host")) {
				rv = get_name(v, 0, &r->hello.host);
			} else if (key_is(k, "name")) {
				rv = get_name(v, 0, &r->hello.name);
			}
		} else if (key_is(k, "worker_id")) {
			rv       = get_u64(v, UINT64_MAX, &r->worker_id);
			have_wid = true;
		} else if (op == TBP_OP_WORKER_TAKE && key_is(k, "free")) {
			rv = get_u32(v, &r->free);
		} else if (op == TBP_OP_WORKER_TAKE && key_is(k, "dones")) {
			rv = get_u64(v, UINT64_MAX, &r->dones);
		} else if (op == TBP_OP_WORKER_DONE && key_is(k, "results")) {
			if (v->type != MSGPACK_OBJECT_ARRAY ||
			    v->via.array.size == 0) {
				return (TB_EBADREQ);
			}
			if (v->via.array.size > TBP_MAX_SLOTS) {
				return (TB_ETOOBIG);
			}
			r->nresults = v->via.array.size;
			if ((r->results = zalloc(&r->priv_, r->nresults,
			         sizeof(*r->results))) == NULL) {
				return (TB_ENOMEM);
			}
			for (uint32_t j = 0; j < r->nresults && rv == TB_OK;
			     j++) {
				rv = dec_done_entry(
				    &r->results[j], &v->via.array.ptr[j]);
			}
		} else if (op == TBP_OP_WORKER_DONE) {
			if (key_is(k, "id")) {
				rv      = get_u64(v, UINT64_MAX, &r->done.id);
				have_id = true;
			} else if (key_is(k, "attempt")) {
				rv       = get_u32(v, &r->done.attempt);
				have_att = true;
			} else if (key_is(k, "ok")) {
				rv      = get_bool(v, &r->done.ok);
				have_ok = true;
			} else if (key_is(k, "result")) {
				rv = get_bytes(
				    v, TBP_MAX_RESULT, &r->done.result);
			} else if (key_is(k, "error")) {
				rv = get_bytes(
				    v, TBP_MAX_ERROR, &r->done.error);
			} else if (key_is(k, "retryable")) {
				rv = get_bool(v, &r->done.retryable);
			} else if (key_is(k, "seq")) {
				rv = get_u64(v, UINT64_MAX, &r->done.seq);
			}
		} else if (op == TBP_OP_WORKER_BYE && key_is(k, "hand_back")) {
			if (v->type != MSGPACK_OBJECT_ARRAY) {
				return (TB_EBADREQ);
			}
			if (v->via.array.size > TBP_MAX_SLOTS) {
				return (TB_ETOOBIG);
			}
			r->nids = v->via.array.size;
			if (r->nids > 0 &&
			    (r->ids = zalloc(&r->priv_, r->nids,
			         sizeof(*r->ids))) == NULL) {
				return (TB_ENOMEM);
			}
			for (uint32_t j = 0; j < r->nids && rv == TB_OK; j++) {
				rv = get_u64(&v->via.array.ptr[j], UINT64_MAX,
				    &r->ids[j]);
			}
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	if (op == TBP_OP_WORKER_HELLO) {
		if (r->hello.nhandlers == 0 || r->hello.slots == 0 ||
		    r->hello.slots > TBP_MAX_SLOTS) {
			return (TB_EBADREQ);
		}
		return (TB_OK);
	}
	if (!have_wid ||
	    (op == TBP_OP_WORKER_DONE && r->nresults == 0 &&
	        (!have_id || !have_att || !have_ok))) {
		return (TB_EBADREQ);
	}
	if (r->free > TBP_MAX_SLOTS) {
		return (TB_EBADREQ);
	}
	return (TB_OK);
}

// req_token reads the optional "token" of a request body (any op), so
// that the broker can check it before it answers anything else. A token
// that is not a string of 1..TBP_MAX_TOKEN bytes without NUL is treated as
// absent: the broker then answers unauthorized, not bad_request, and a
// peer without the token learns nothing about the body's other fields.
static void
req_token(tbp_req *r, const msgpack_object *body)
{
	if (body->type != MSGPACK_OBJECT_MAP) {
		return;
	}
	for (uint32_t i = 0; i < body->via.map.size; i++) {
		const msgpack_object *k = &body->via.map.ptr[i].key;
		tbp_bytes             v;

		if (k->type == MSGPACK_OBJECT_STR && key_is(k, "token") &&
		    get_text(&body->via.map.ptr[i].val, 1, TBP_MAX_TOKEN,
		        &v) == TB_OK) {
			r->token      = v;
			r->have_token = true;
			return;
		}
	}
}

int
tbp_req_decode(tbp_req *r, const void *buf, size_t len)
{
	const msgpack_object *body;
	const uint8_t        *copy;
	int                   rv;

	memset(r, 0, sizeof(*r));
	msgpack_unpacked_init(&r->priv_);
	r->timeout_ms = -1;
	r->state      = -1;

	if ((rv = unpack(&r->priv_, buf, len, 0, &copy)) != TB_OK) {
		return (rv);
	}
	rv = envelope(&r->priv_.data, &r->version, &r->op, &r->req_id,
	    &r->have_envelope);
	if (r->have_envelope && r->priv_.data.via.array.size == 4) {
		// Even for a newer version or an unknown op: the broker
		// answers those only to a peer with the right token.
		req_token(r, &r->priv_.data.via.array.ptr[3]);
	}
	if (rv != TB_OK) {
		return (rv);
	}
	if (r->priv_.data.via.array.size != 4) {
		return (TB_EBADREQ);
	}
	body = &r->priv_.data.via.array.ptr[3];
	if ((rv = map_check(body)) != TB_OK) {
		return (rv);
	}
	switch (r->op) {
	case TBP_OP_SUBMIT:
		return (dec_submit(r, body));
	case TBP_OP_STATUS:
	case TBP_OP_CANCEL:
	case TBP_OP_WAIT:
	case TBP_OP_LIST:
		return (dec_req_fields(r, body));
	case TBP_OP_RETRY:
	case TBP_OP_PAUSE:
	case TBP_OP_RESUME:
	case TBP_OP_DRAIN:
	case TBP_OP_PURGE:
	case TBP_OP_SCHED_RM:
	case TBP_OP_SCHED_PAUSE:
		return (dec_req_admin(r, body));
	case TBP_OP_SCHED_ADD:
		return (dec_sched_add(r, body));
	case TBP_OP_WORKER_HELLO:
	case TBP_OP_WORKER_TAKE:
	case TBP_OP_WORKER_DONE:
	case TBP_OP_WORKER_BYE:
		return (dec_req_worker(r, body));
	default: // ping, stats, shutdown, schedule_list, queues: no fields
		return (TB_OK);
	}
}

void
tbp_req_fini(tbp_req *r)
{
	msgpack_unpacked_destroy(&r->priv_); // frees the copy and the tasks
	memset(r, 0, sizeof(*r));
	msgpack_unpacked_init(&r->priv_);
}

// Replies.

static int
dec_task_info(tbp_task_info *t, const msgpack_object *o)
{
	bool have_id    = false;
	bool have_state = false;
	int  rv;

	if ((rv = map_check(o)) != TB_OK) {
		return (rv);
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "id")) {
			rv      = get_u64(v, UINT64_MAX, &t->id);
			have_id = true;
		} else if (key_is(k, "queue")) {
			rv = get_name(v, 0, &t->queue);
		} else if (key_is(k, "handler")) {
			rv = get_name(v, 0, &t->handler);
		} else if (key_is(k, "state")) {
			rv         = get_u32(v, &t->state);
			have_state = true;
		} else if (key_is(k, "attempts")) {
			rv = get_u32(v, &t->attempts);
		} else if (key_is(k, "max_attempts")) {
			rv = get_u32(v, &t->max_attempts);
		} else if (key_is(k, "crashes")) {
			rv = get_u32(v, &t->crashes);
		} else if (key_is(k, "max_crashes")) {
			rv = get_u32(v, &t->max_crashes);
		} else if (key_is(k, "priority")) {
			rv = get_i32(v, &t->priority);
		} else if (key_is(k, "created_at")) {
			rv = get_i64(v, INT64_MIN, INT64_MAX, &t->created_at);
		} else if (key_is(k, "started_at")) {
			rv = get_i64(v, INT64_MIN, INT64_MAX, &t->started_at);
		} else if (key_is(k, "finished_at")) {
			rv = get_i64(v, INT64_MIN, INT64_MAX, &t->finished_at);
		} else if (key_is(k, "result")) {
			rv = get_bytes(v, TBP_MAX_RESULT, &t->result);
		} else if (key_is(k, "error")) {
			rv = get_bytes(v, TBP_MAX_ERROR, &t->error);
		} else if (key_is(k, "run_at")) {
			rv = get_i64(v, INT64_MIN, INT64_MAX, &t->run_at);
		} else if (key_is(k, "timeout_ms")) {
			rv = get_u32(v, &t->timeout_ms);
		} else if (key_is(k, "forever")) {
			rv = get_bool(v, &t->forever);
		} else if (key_is(k, "key")) {
			rv = get_text(v, 0, TBP_MAX_KEY, &t->key);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	if (!have_id || !have_state) {
		return (TB_EBADREQ);
	}
	return (TB_OK);
}

// dec_bools reads an array of n flags into a (n entries, zeroed); an
// absent array leaves them false.
static int
dec_bools(bool *a, const msgpack_object *o, uint32_t n)
{
	int rv;

	if (o == NULL) {
		return (TB_OK);
	}
	for (uint32_t i = 0; i < n; i++) {
		if ((rv = get_bool(&o->via.array.ptr[i], &a[i])) != TB_OK) {
			return (rv);
		}
	}
	return (TB_OK);
}

// dup and existing may be absent (all false), but when present they have
// one flag per id; both arrays are always allocated so that a caller can
// index them without a NULL check.
static int
dec_rep_submit(tbp_rep *r, const msgpack_object *ids,
    const msgpack_object *dup, const msgpack_object *existing)
{
	uint32_t n;
	int      rv;

	if (ids == NULL || ids->type != MSGPACK_OBJECT_ARRAY) {
		return (TB_EBADREQ);
	}
	if ((n = ids->via.array.size) > TBP_MAX_TASKS) {
		return (TB_ETOOBIG);
	}
	if (dup != NULL &&
	    (dup->type != MSGPACK_OBJECT_ARRAY || dup->via.array.size != n)) {
		return (TB_EBADREQ);
	}
	if (existing != NULL &&
	    (existing->type != MSGPACK_OBJECT_ARRAY ||
	        existing->via.array.size != n)) {
		return (TB_EBADREQ);
	}
	if (n == 0) {
		return (TB_OK);
	}
	r->ids      = zalloc(&r->priv_, n, sizeof(*r->ids));
	r->dup      = zalloc(&r->priv_, n, sizeof(*r->dup));
	r->existing = zalloc(&r->priv_, n, sizeof(*r->existing));
	if (r->ids == NULL || r->dup == NULL || r->existing == NULL) {
		return (TB_ENOMEM);
	}
	for (uint32_t i = 0; i < n; i++) {
		rv = get_u64(&ids->via.array.ptr[i], UINT64_MAX, &r->ids[i]);
		if (rv != TB_OK) {
			return (rv);
		}
	}
	if ((rv = dec_bools(r->dup, dup, n)) != TB_OK ||
	    (rv = dec_bools(r->existing, existing, n)) != TB_OK) {
		return (rv);
	}
	r->nids = n;
	return (TB_OK);
}

static int
dec_qstat(tbp_qstat *q, const msgpack_object *o)
{
	bool have_name = false;
	int  rv;

	if ((rv = map_check(o)) != TB_OK) {
		return (rv);
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "name")) {
			rv        = get_name(v, 0, &q->name);
			have_name = true;
		} else if (key_is(k, "pending")) {
			rv = get_u64(v, UINT64_MAX, &q->pending);
		} else if (key_is(k, "running")) {
			rv = get_u64(v, UINT64_MAX, &q->running);
		} else if (key_is(k, "failed")) {
			rv = get_u64(v, UINT64_MAX, &q->failed);
		} else if (key_is(k, "dead")) {
			rv = get_u64(v, UINT64_MAX, &q->dead);
		} else if (key_is(k, "done")) {
			rv = get_u64(v, UINT64_MAX, &q->done);
		} else if (key_is(k, "cancelled")) {
			rv = get_u64(v, UINT64_MAX, &q->cancelled);
		} else if (key_is(k, "paused")) {
			rv = get_bool(v, &q->paused);
		} else if (key_is(k, "concurrency")) {
			rv = get_u32(v, &q->concurrency);
		} else if (key_is(k, "max_pending")) {
			rv = get_u64(v, UINT64_MAX, &q->max_pending);
		} else if (key_is(k, "done_last_min")) {
			rv = get_u64(v, UINT64_MAX, &q->done_last_min);
		} else if (key_is(k, "oldest_pending_ms")) {
			rv = get_u64(v, UINT64_MAX, &q->oldest_pending_ms);
		} else if (key_is(k, "forever")) {
			rv = get_u32(v, &q->forever);
		} else if (key_is(k, "crashloop")) {
			rv = get_u32(v, &q->crashloop);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	if (!have_name) {
		return (TB_EBADREQ);
	}
	return (TB_OK);
}

// dec_rep_array decodes an array reply field (tasks, schedules, queues) of
// at most max elements of size bytes each, with dec for one element. The
// array is allocated from the element count only after tbp_check has
// proved that many objects are present.
static int
dec_rep_array(tbp_rep *r, const msgpack_object *a, uint32_t max, size_t size,
    int (*dec)(void *elem, const msgpack_object *o), void **arrp, uint32_t *np)
{
	uint32_t n;
	char    *arr;
	int      rv;

	if (a == NULL || a->type != MSGPACK_OBJECT_ARRAY) {
		return (TB_EBADREQ);
	}
	if ((n = a->via.array.size) > max) {
		return (TB_ETOOBIG);
	}
	if (n == 0) {
		return (TB_OK);
	}
	if ((arr = zalloc(&r->priv_, n, size)) == NULL) {
		return (TB_ENOMEM);
	}
	for (uint32_t i = 0; i < n; i++) {
		if ((rv = dec(arr + i * size, &a->via.array.ptr[i])) !=
		    TB_OK) {
			return (rv);
		}
	}
	*arrp = arr;
	*np   = n;
	return (TB_OK);
}

static int
dec_task_elem(void *elem, const msgpack_object *o)
{
	return (dec_task_info(elem, o));
}

static int
dec_sched_elem(void *elem, const msgpack_object *o)
{
	return (dec_sched(elem, o, true));
}

static int
dec_qstat_elem(void *elem, const msgpack_object *o)
{
	return (dec_qstat(elem, o));
}

// dec_zone_ is the zone of the reply being decoded, for dec_winfo_elem's
// name arrays (dec_rep_array's element readers take no context). One per
// thread: clients decode in many threads at once.
static _Thread_local msgpack_unpacked *dec_zone_;

static int
dec_job(tbp_job *j, const msgpack_object *o, bool full)
{
	bool have_id = false;
	bool have_at = false;
	int  rv;

	if ((rv = map_check(o)) != TB_OK) {
		return (rv);
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "id")) {
			rv      = get_u64(v, UINT64_MAX, &j->id);
			have_id = true;
		} else if (key_is(k, "attempt")) {
			rv      = get_u32(v, &j->attempt);
			have_at = true;
		} else if (full && key_is(k, "crashes")) {
			rv = get_u32(v, &j->crashes);
		} else if (full && key_is(k, "handler")) {
			rv = get_name(v, 1, &j->handler);
		} else if (full && key_is(k, "queue")) {
			rv = get_name(v, 0, &j->queue);
		} else if (full && key_is(k, "payload")) {
			rv = get_bytes(v, TBP_MAX_PAYLOAD, &j->payload);
		} else if (full && key_is(k, "deadline_ms")) {
			rv = get_i64(v, INT64_MIN, INT64_MAX, &j->deadline_ms);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	return (have_id && have_at ? TB_OK : TB_EBADREQ);
}

static int
dec_job_elem(void *elem, const msgpack_object *o)
{
	return (dec_job(elem, o, true));
}

static int
dec_cancel_elem(void *elem, const msgpack_object *o)
{
	return (dec_job(elem, o, false));
}

static int
dec_winfo_elem(void *elem, const msgpack_object *o)
{
	tbp_winfo *w = elem;
	int        rv;

	if ((rv = map_check(o)) != TB_OK) {
		return (rv);
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "id")) {
			rv = get_u64(v, UINT64_MAX, &w->id);
		} else if (key_is(k, "pid")) {
			rv = get_u64(v, UINT64_MAX, &w->pid);
		} else if (key_is(k, "host")) {
			rv = get_name(v, 0, &w->host);
		} else if (key_is(k, "name")) {
			rv = get_name(v, 0, &w->name);
		} else if (key_is(k, "handlers")) {
			rv = get_names(
			    dec_zone_, v, &w->handlers, &w->nhandlers);
		} else if (key_is(k, "queues")) {
			rv = get_names(dec_zone_, v, &w->queues, &w->nqueues);
		} else if (key_is(k, "slots")) {
			rv = get_u32(v, &w->slots);
		} else if (key_is(k, "running")) {
			rv = get_u32(v, &w->running);
		} else if (key_is(k, "done")) {
			rv = get_u64(v, UINT64_MAX, &w->done);
		} else if (key_is(k, "since")) {
			rv = get_i64(v, INT64_MIN, INT64_MAX, &w->since);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	return (TB_OK);
}

static int
dec_whstat_elem(void *elem, const msgpack_object *o)
{
	tbp_whstat *w = elem;
	int         rv;

	if ((rv = map_check(o)) != TB_OK) {
		return (rv);
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "name")) {
			rv = get_name(v, 0, &w->name);
		} else if (key_is(k, "workers")) {
			rv = get_u32(v, &w->workers);
		} else if (key_is(k, "waiting")) {
			rv = get_u64(v, UINT64_MAX, &w->waiting);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	return (TB_OK);
}

// dec_rep_body reads the body of an ok reply to r->op.
static int
dec_rep_body(tbp_rep *r, const msgpack_object *body)
{
	const msgpack_object *ids   = NULL;
	const msgpack_object *dup   = NULL;
	const msgpack_object *task  = NULL;
	const msgpack_object *tasks = NULL;
	const msgpack_object *exist = NULL;
	const msgpack_object *arr   = NULL; // schedules or queues
	const msgpack_object *arr2  = NULL; // cancels, whandlers
	tbp_stats            *st    = &r->stats;
	int                   rv    = TB_OK;

	for (uint32_t i = 0; i < body->via.map.size; i++) {
		const msgpack_object *k = &body->via.map.ptr[i].key;
		const msgpack_object *v = &body->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		switch (r->op) {
		case TBP_OP_SUBMIT:
			if (key_is(k, "ids")) {
				ids = v;
			} else if (key_is(k, "dup")) {
				dup = v;
			} else if (key_is(k, "existing")) {
				exist = v;
			}
			break;
		case TBP_OP_STATUS:
		case TBP_OP_CANCEL:
		case TBP_OP_WAIT:
			if (key_is(k, "task")) {
				task = v;
			} else if (r->op == TBP_OP_WAIT &&
			    key_is(k, "timed_out")) {
				rv = get_bool(v, &r->timed_out);
			}
			break;
		case TBP_OP_LIST:
			if (key_is(k, "tasks")) {
				tasks = v;
			}
			break;
		case TBP_OP_STATS:
			// Missing counters read as 0, so a broker may drop
			// one without breaking older clients.
			if (key_is(k, "pending")) {
				rv = get_u64(v, UINT64_MAX, &st->pending);
			} else if (key_is(k, "running")) {
				rv = get_u64(v, UINT64_MAX, &st->running);
			} else if (key_is(k, "done")) {
				rv = get_u64(v, UINT64_MAX, &st->done);
			} else if (key_is(k, "failed")) {
				rv = get_u64(v, UINT64_MAX, &st->failed);
			} else if (key_is(k, "dead")) {
				rv = get_u64(v, UINT64_MAX, &st->dead);
			} else if (key_is(k, "cancelled")) {
				rv = get_u64(v, UINT64_MAX, &st->cancelled);
			} else if (key_is(k, "submitted")) {
				rv = get_u64(v, UINT64_MAX, &st->submitted);
			} else if (key_is(k, "completed")) {
				rv = get_u64(v, UINT64_MAX, &st->completed);
			} else if (key_is(k, "uptime_ms")) {
				rv = get_u64(v, UINT64_MAX, &st->uptime_ms);
			} else if (key_is(k, "workers")) {
				rv = get_u32(v, &st->workers);
			} else if (key_is(k, "pid")) {
				rv = get_u32(v, &st->pid);
			} else if (key_is(k, "schedules")) {
				rv = get_u64(v, UINT64_MAX, &st->schedules);
			} else if (key_is(k, "forever")) {
				rv = get_u64(v, UINT64_MAX, &st->forever);
			} else if (key_is(k, "crashloop")) {
				rv = get_u64(v, UINT64_MAX, &st->crashloop);
			} else if (key_is(k, "whandlers")) {
				arr2 = v;
			}
			break;
		case TBP_OP_WORKER_HELLO:
			if (key_is(k, "worker_id")) {
				rv = get_u64(v, UINT64_MAX, &r->worker_id);
			} else if (key_is(k, "heartbeat_ms")) {
				rv = get_u32(v, &r->heartbeat_ms);
			} else if (key_is(k, "timeout_ms")) {
				rv = get_u32(v, &r->wtimeout_ms);
			}
			break;
		case TBP_OP_WORKER_DONE:
			if (key_is(k, "status")) {
				arr = v;
			}
			break;
		case TBP_OP_WORKER_TAKE:
			if (key_is(k, "jobs")) {
				arr = v;
			} else if (key_is(k, "cancels")) {
				arr2 = v;
			} else if (key_is(k, "stop")) {
				rv = get_bool(v, &r->stop);
			}
			break;
		case TBP_OP_WORKERS:
			if (key_is(k, "workers")) {
				arr = v;
			}
			break;
		case TBP_OP_RETRY:
		case TBP_OP_PURGE:
			if (key_is(k, "count")) {
				rv = get_u64(v, UINT64_MAX, &r->count);
			}
			break;
		case TBP_OP_DRAIN:
			if (key_is(k, "timed_out")) {
				rv = get_bool(v, &r->timed_out);
			}
			break;
		case TBP_OP_SCHED_LIST:
			if (key_is(k, "schedules")) {
				arr = v;
			}
			break;
		case TBP_OP_QUEUES:
			if (key_is(k, "queues")) {
				arr = v;
			}
			break;
		case TBP_OP_PING:
			if (key_is(k, "version")) {
				rv = get_bytes(
				    v, TBP_MAX_NAME, &r->version_str);
			} else if (key_is(k, "pid")) {
				rv = get_u64(v, UINT64_MAX, &r->pid);
			}
			break;
		default: // shutdown, pause, resume, schedule_*: no fields
			break;
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	switch (r->op) {
	case TBP_OP_SUBMIT:
		return (dec_rep_submit(r, ids, dup, exist));
	case TBP_OP_STATUS:
	case TBP_OP_CANCEL:
	case TBP_OP_WAIT:
		if (task == NULL) {
			return (TB_EBADREQ);
		}
		if ((rv = dec_task_info(&r->task, task)) == TB_OK) {
			r->have_task = true;
		}
		return (rv);
	case TBP_OP_LIST:
		return (
		    dec_rep_array(r, tasks, TBP_MAX_LIST, sizeof(*r->tasks),
		        dec_task_elem, (void **) &r->tasks, &r->ntasks));
	case TBP_OP_SCHED_LIST:
		return (dec_rep_array(r, arr, TBP_MAX_SCHEDULES,
		    sizeof(*r->scheds), dec_sched_elem, (void **) &r->scheds,
		    &r->nscheds));
	case TBP_OP_QUEUES:
		return (
		    dec_rep_array(r, arr, TBP_MAX_QUEUES, sizeof(*r->queues),
		        dec_qstat_elem, (void **) &r->queues, &r->nqueues));
	case TBP_OP_STATS:
		if (arr2 == NULL) {
			return (TB_OK);
		}
		return (
		    dec_rep_array(r, arr2, TBP_MAX_QUEUES, sizeof(*r->whstats),
		        dec_whstat_elem, (void **) &r->whstats, &r->nwhstats));
	case TBP_OP_WORKER_TAKE:
		if (arr != NULL &&
		    (rv = dec_rep_array(r, arr, TBP_MAX_SLOTS,
		         sizeof(*r->jobs), dec_job_elem, (void **) &r->jobs,
		         &r->njobs)) != TB_OK) {
			return (rv);
		}
		if (arr2 != NULL) {
			return (dec_rep_array(r, arr2, TBP_MAX_SLOTS * 4,
			    sizeof(*r->cancels), dec_cancel_elem,
			    (void **) &r->cancels, &r->ncancels));
		}
		return (TB_OK);
	case TBP_OP_WORKER_DONE:
		if (arr == NULL) {
			return (TB_OK); // the reply to a single result
		}
		if (arr->type != MSGPACK_OBJECT_ARRAY) {
			return (TB_EBADREQ);
		}
		if (arr->via.array.size > TBP_MAX_SLOTS) {
			return (TB_ETOOBIG);
		}
		r->nstatuses = arr->via.array.size;
		if (r->nstatuses > 0 &&
		    (r->statuses = zalloc(&r->priv_, r->nstatuses,
		         sizeof(*r->statuses))) == NULL) {
			return (TB_ENOMEM);
		}
		for (uint32_t i = 0; i < r->nstatuses; i++) {
			if ((rv = get_u32(&arr->via.array.ptr[i],
			         &r->statuses[i])) != TB_OK) {
				return (rv);
			}
		}
		return (TB_OK);
	case TBP_OP_WORKERS:
		dec_zone_ = &r->priv_;
		return (
		    dec_rep_array(r, arr, TBP_MAX_WORKERS, sizeof(*r->workers),
		        dec_winfo_elem, (void **) &r->workers, &r->nworkers));
	default:
		return (TB_OK);
	}
}

// dec_rep_error reads {"error": name, "message": text}; both are optional
// so that a terse error reply still carries its status.
static int
dec_rep_error(tbp_rep *r, const msgpack_object *body)
{
	int rv = TB_OK;

	for (uint32_t i = 0; i < body->via.map.size; i++) {
		const msgpack_object *k = &body->via.map.ptr[i].key;
		const msgpack_object *v = &body->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "error")) {
			rv = get_bytes(v, TBP_MAX_NAME, &r->errname);
		} else if (key_is(k, "message")) {
			rv = get_bytes(v, TBP_MAX_ERROR, &r->message);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	return (TB_OK);
}

static int
rep_decode(tbp_rep *r, const void *buf, size_t len)
{
	const msgpack_object *a;
	const msgpack_object *body;
	const uint8_t        *copy;
	uint64_t              status;
	int                   rv;

	if ((rv = unpack(&r->priv_, buf, len, 0, &copy)) != TB_OK) {
		return (rv);
	}
	if (r->priv_.data.type != MSGPACK_OBJECT_ARRAY ||
	    r->priv_.data.via.array.size != 5) {
		return (TB_EBADREQ);
	}
	a = r->priv_.data.via.array.ptr;
	if (get_u32(&a[0], &r->version) != TB_OK ||
	    get_u32(&a[1], &r->op) != TB_OK ||
	    get_u64(&a[2], UINT64_MAX, &r->req_id) != TB_OK ||
	    get_u64(&a[3], INT32_MAX, &status) != TB_OK) {
		return (TB_EBADREQ);
	}
	r->status = (int) status;
	if (r->version != TBP_VERSION) {
		return (TB_EBADREQ);
	}
	body = &a[4];
	if ((rv = map_check(body)) != TB_OK) {
		return (rv);
	}
	if (r->status != TB_OK) {
		// An error reply may answer an op this side does not know.
		return (dec_rep_error(r, body));
	}
	if (r->op >= TBP_OP_COUNT) {
		return (TB_EBADREQ);
	}
	return (dec_rep_body(r, body));
}

int
tbp_rep_decode(tbp_rep *r, const void *buf, size_t len)
{
	int rv;

	memset(r, 0, sizeof(*r));
	msgpack_unpacked_init(&r->priv_);
	rv = rep_decode(r, buf, len);
	// A bad reply is the broker's fault, not the caller's request.
	return (rv == TB_EBADREQ ? TB_EPROTO : rv);
}

void
tbp_rep_fini(tbp_rep *r)
{
	msgpack_unpacked_destroy(&r->priv_);
	free(r->priv_alloc_); // unused today: the arrays live in the zone
	memset(r, 0, sizeof(*r));
	msgpack_unpacked_init(&r->priv_);
}

// Events.

static int
event_decode(tbp_event *e, const void *buf, size_t len)
{
	const uint8_t        *nul;
	const uint8_t        *copy;
	const msgpack_object *o;
	size_t                tlen;
	bool                  have_event = false;
	int                   rv         = TB_OK;

	if (len > TBP_MAX_MSG) {
		return (TB_ETOOBIG);
	}
	if (buf == NULL) {
		return (TB_EBADREQ);
	}
	nul = memchr(
	    buf, 0, len < TBP_MAX_TOPIC_ + 1 ? len : TBP_MAX_TOPIC_ + 1);
	if (nul == NULL) {
		return (TB_EBADREQ);
	}
	tlen = (size_t) (nul - (const uint8_t *) buf);
	if ((rv = unpack(&e->priv_, buf, len, tlen + 1, &copy)) != TB_OK) {
		return (rv);
	}
	e->topic.p = copy;
	e->topic.n = (uint32_t) tlen;
	o          = &e->priv_.data;
	if ((rv = map_check(o)) != TB_OK) {
		return (rv);
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;
		const msgpack_object *v = &o->via.map.ptr[i].val;

		if (v->type == MSGPACK_OBJECT_NIL) {
			continue;
		}
		if (key_is(k, "seq")) {
			rv = get_u64(v, UINT64_MAX, &e->seq);
		} else if (key_is(k, "event")) {
			rv         = get_name(v, 1, &e->event);
			have_event = true;
		} else if (key_is(k, "id")) {
			rv = get_u64(v, UINT64_MAX, &e->id);
		} else if (key_is(k, "queue")) {
			rv = get_name(v, 0, &e->queue);
		} else if (key_is(k, "handler")) {
			rv = get_name(v, 0, &e->handler);
		} else if (key_is(k, "state")) {
			rv = get_u32(v, &e->state);
		} else if (key_is(k, "attempt")) {
			rv = get_u32(v, &e->attempt);
		} else if (key_is(k, "crashes")) {
			rv = get_u32(v, &e->crashes);
		} else if (key_is(k, "duration_us")) {
			rv = get_u64(v, UINT64_MAX, &e->duration_us);
		} else if (key_is(k, "time")) {
			rv = get_i64(v, INT64_MIN, INT64_MAX, &e->time);
		} else if (key_is(k, "result")) {
			rv = get_bytes(v, TBP_MAX_RESULT, &e->result);
		} else if (key_is(k, "error")) {
			rv = get_bytes(v, TBP_MAX_ERROR, &e->error);
		}
		if (rv != TB_OK) {
			return (rv);
		}
	}
	if (!have_event) {
		return (TB_EBADREQ);
	}
	return (TB_OK);
}

int
tbp_event_decode(tbp_event *e, const void *buf, size_t len)
{
	int rv;

	memset(e, 0, sizeof(*e));
	msgpack_unpacked_init(&e->priv_);
	rv = event_decode(e, buf, len);
	// An event has no one to answer, so every flaw is one protocol error;
	// only a failed allocation is told apart.
	return (rv == TB_OK || rv == TB_ENOMEM ? rv : TB_EPROTO);
}

void
tbp_event_fini(tbp_event *e)
{
	msgpack_unpacked_destroy(&e->priv_);
	memset(e, 0, sizeof(*e));
	msgpack_unpacked_init(&e->priv_);
}
