// json_mp.c: JSON <-> msgpack conversion for the taskbroker tool. The rules
// are in json_mp.h.

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_mp.h"
#include "tbp.h"

const char *
jmp_strerror(int code)
{
	switch (code) {
	case JMP_OK:
		return ("success");
	case JMP_ENOMEM:
		return ("out of memory");
	case JMP_EDEPTH:
		return ("nested too deeply");
	case JMP_EJSON:
		return ("invalid JSON");
	case JMP_EMSGPACK:
		return ("invalid msgpack");
	default:
		return ("unknown error");
	}
}

// ---- JSON to msgpack ------------------------------------------------------

// pack_value packs j, which is enclosed by depth containers.
static int
pack_value(msgpack_packer *pk, const json_t *j, unsigned depth)
{
	const char *key;
	size_t      klen;
	json_t     *v;
	size_t      i;
	int         rv;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		if (depth >= JMP_MAX_DEPTH) {
			return (JMP_EDEPTH);
		}
		if (msgpack_pack_map(pk, json_object_size(j)) != 0) {
			return (JMP_ENOMEM);
		}
		// The cast drops const only for the iterator macro, which
		// does not modify the object.
		json_object_keylen_foreach((json_t *) j, key, klen, v)
		{
			if (msgpack_pack_str_with_body(pk, key, klen) != 0) {
				return (JMP_ENOMEM);
			}
			if ((rv = pack_value(pk, v, depth + 1)) != JMP_OK) {
				return (rv);
			}
		}
		return (JMP_OK);
	case JSON_ARRAY:
		if (depth >= JMP_MAX_DEPTH) {
			return (JMP_EDEPTH);
		}
		if (msgpack_pack_array(pk, json_array_size(j)) != 0) {
			return (JMP_ENOMEM);
		}
		json_array_foreach((json_t *) j, i, v)
		{
			if ((rv = pack_value(pk, v, depth + 1)) != JMP_OK) {
				return (rv);
			}
		}
		return (JMP_OK);
	case JSON_STRING:
		rv = msgpack_pack_str_with_body(
		    pk, json_string_value(j), json_string_length(j));
		break;
	case JSON_INTEGER:
		rv = msgpack_pack_int64(pk, json_integer_value(j));
		break;
	case JSON_REAL:
		rv = msgpack_pack_double(pk, json_real_value(j));
		break;
	case JSON_TRUE:
		rv = msgpack_pack_true(pk);
		break;
	case JSON_FALSE:
		rv = msgpack_pack_false(pk);
		break;
	case JSON_NULL:
	default:
		rv = msgpack_pack_nil(pk);
		break;
	}
	return (rv == 0 ? JMP_OK : JMP_ENOMEM);
}

int
jmp_pack_json(msgpack_sbuffer *b, const json_t *j)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, b, msgpack_sbuffer_write);
	return (pack_value(&pk, j, 0));
}

int
jmp_parse(msgpack_sbuffer *b, const char *text, char *err, size_t errlen)
{
	json_error_t je;
	json_t      *j;
	int          rv;

	j = json_loads(text,
	    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (j == NULL) {
		if (err != NULL && errlen > 0) {
			snprintf(err, errlen, "line %d, column %d: %s",
			    je.line, je.column, je.text);
		}
		return (JMP_EJSON);
	}
	rv = jmp_pack_json(b, j);
	json_decref(j);
	if (rv != JMP_OK && err != NULL && errlen > 0) {
		snprintf(err, errlen, "%s", jmp_strerror(rv));
	}
	return (rv);
}

// ---- msgpack to JSON ------------------------------------------------------

char *
jmp_base64(const void *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *s = p;
	char          *out, *o;
	size_t         i;

	if ((out = malloc((n + 2) / 3 * 4 + 1)) == NULL) {
		return (NULL);
	}
	o = out;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8 |
		    s[i + 2];
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = tab[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t) s[i] << 16;

		if (i + 1 < n) {
			v |= (uint32_t) s[i + 1] << 8;
		}
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return (out);
}

json_t *
jmp_base64_json(const void *p, size_t n)
{
	json_t *j;
	char   *b64;

	if ((b64 = jmp_base64(p, n)) == NULL) {
		return (NULL);
	}
	j = json_string(b64);
	free(b64);
	return (j);
}

// bytes_to_json returns a JSON string of p[0..n): the text itself when it
// is valid UTF-8, else its base64. NULL when out of memory.
static json_t *
bytes_to_json(const char *p, size_t n)
{
	json_t *j;

	// json_stringn validates UTF-8 (and accepts NUL bytes); it fails on
	// invalid text, and then (or on OOM) base64 is the answer.
	if ((j = json_stringn(p != NULL ? p : "", n)) != NULL) {
		return (j);
	}
	return (jmp_base64_json(p, n));
}

// key_text returns a malloc'd key for a map key that is not a str, and its
// length in *lenp. NULL with *rvp set on failure.
static char *
key_text(const msgpack_object *k, unsigned depth, size_t *lenp, int *rvp)
{
	char    buf[64];
	char   *s = NULL;
	json_t *j;

	*rvp = JMP_OK;
	switch (k->type) {
	case MSGPACK_OBJECT_NIL:
		snprintf(buf, sizeof(buf), "null");
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		snprintf(
		    buf, sizeof(buf), "%s", k->via.boolean ? "true" : "false");
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(buf, sizeof(buf), "%" PRIu64, k->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(buf, sizeof(buf), "%" PRId64, k->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		snprintf(buf, sizeof(buf), "%.17g", k->via.f64);
		break;
	default:
		// bin, ext, array, map: the JSON text of the converted key
		// (for bin and ext that is a string; use it without the
		// quotes).
		if ((*rvp = jmp_object_to_json(&j, k, depth)) != JMP_OK) {
			return (NULL);
		}
		if (json_is_string(j)) {
			*lenp = json_string_length(j);
			if ((s = malloc(*lenp + 1)) != NULL) {
				memcpy(s, json_string_value(j), *lenp + 1);
			}
		} else {
			s     = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
			*lenp = s != NULL ? strlen(s) : 0;
		}
		json_decref(j);
		if (s == NULL) {
			*rvp = JMP_ENOMEM;
		}
		return (s);
	}
	if ((s = strdup(buf)) == NULL) {
		*rvp = JMP_ENOMEM;
		return (NULL);
	}
	*lenp = strlen(s);
	return (s);
}

static int
map_to_json(json_t **jp, const msgpack_object_map *m, unsigned depth)
{
	json_t *obj, *v;
	int     rv;

	if ((obj = json_object()) == NULL) {
		return (JMP_ENOMEM);
	}
	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;
		char                 *ks;
		size_t                klen;
		int                   set;

		if ((rv = jmp_object_to_json(&v, &m->ptr[i].val, depth + 1)) !=
		    JMP_OK) {
			goto fail;
		}
		if (k->type == MSGPACK_OBJECT_STR) {
			// Invalid UTF-8 is refused here; fall back to the
			// stringified (base64) form below.
			set = json_object_setn_new(obj, k->via.str.ptr,
			    k->via.str.size, json_incref(v));
			if (set == 0) {
				json_decref(v); // obj holds its own reference
				continue;
			}
			// The failed set dropped only the extra reference; v
			// is still ours.
		}
		if ((ks = key_text(k, depth + 1, &klen, &rv)) == NULL) {
			json_decref(v);
			goto fail;
		}
		set = json_object_setn_new(obj, ks, klen, v); // steals v
		free(ks);
		if (set != 0) {
			rv = JMP_ENOMEM;
			goto fail;
		}
	}
	*jp = obj;
	return (JMP_OK);
fail:
	json_decref(obj);
	return (rv);
}

int
jmp_object_to_json(json_t **jp, const msgpack_object *o, unsigned depth)
{
	json_t *j = NULL;
	int     rv;

	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		j = json_null();
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		j = json_boolean(o->via.boolean);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t) INT64_MAX) {
			j = json_real((double) o->via.u64);
		} else {
			j = json_integer((json_int_t) o->via.u64);
		}
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		j = json_integer((json_int_t) o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		j = isfinite(o->via.f64) ? json_real(o->via.f64) : json_null();
		break;
	case MSGPACK_OBJECT_STR:
		j = bytes_to_json(o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		j = bytes_to_json(o->via.bin.ptr, o->via.bin.size);
		break;
	case MSGPACK_OBJECT_EXT: {
		char *b64 = jmp_base64(o->via.ext.ptr, o->via.ext.size);

		j = b64 != NULL ? json_string(b64) : NULL;
		free(b64);
		break;
	}
	case MSGPACK_OBJECT_ARRAY:
		if (depth >= JMP_MAX_DEPTH) {
			return (JMP_EDEPTH);
		}
		if ((j = json_array()) == NULL) {
			return (JMP_ENOMEM);
		}
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			json_t *v;

			rv = jmp_object_to_json(
			    &v, &o->via.array.ptr[i], depth + 1);
			if (rv != JMP_OK) {
				json_decref(j);
				return (rv);
			}
			if (json_array_append_new(j, v) != 0) {
				json_decref(j);
				return (JMP_ENOMEM);
			}
		}
		break;
	case MSGPACK_OBJECT_MAP:
		if (depth >= JMP_MAX_DEPTH) {
			return (JMP_EDEPTH);
		}
		return (map_to_json(jp, &o->via.map, depth));
	default:
		return (JMP_EMSGPACK);
	}
	if (j == NULL) {
		return (JMP_ENOMEM);
	}
	*jp = j;
	return (JMP_OK);
}

int
jmp_to_json(json_t **jp, const void *buf, size_t len)
{
	msgpack_unpacked      u;
	msgpack_unpack_return ur;
	size_t                used = 0, off = 0;
	int                   rv;

	if (buf == NULL || len == 0) {
		return (JMP_EMSGPACK);
	}
	// tbp_check counts depth as we do (a scalar is 0, [] is 1). It must
	// stop anything deeper than msgpack-c's own stack of 32 levels, which
	// would fail as "out of memory".
	if ((rv = tbp_check(buf, len, JMP_MAX_DEPTH, &used)) != TB_OK) {
		return (rv == TB_ETOOBIG ? JMP_EDEPTH : JMP_EMSGPACK);
	}
	if (used != len) {
		return (JMP_EMSGPACK); // trailing bytes
	}
	msgpack_unpacked_init(&u);
	ur = msgpack_unpack_next(&u, buf, len, &off);
	if (ur == MSGPACK_UNPACK_SUCCESS && off == len) {
		rv = jmp_object_to_json(jp, &u.data, 0);
	} else if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
		rv = JMP_ENOMEM;
	} else {
		rv = JMP_EMSGPACK;
	}
	msgpack_unpacked_destroy(&u);
	return (rv);
}
