// json_mp.h: JSON <-> msgpack conversion for the taskbroker tool, on
// jansson and msgpack-c. Private to the CLI (and its unit test).
//
// JSON to msgpack: object -> map (string keys), array -> array, string ->
// str, integer -> int, real -> float64, true/false -> bool, null -> nil.
//
// msgpack to JSON:
// - nil, bool, int, float, array and map convert as expected. A positive
//   integer above INT64_MAX (which jansson cannot hold) becomes a JSON real;
//   a NaN or infinite float becomes null.
// - str and bin become a JSON string when their bytes are valid UTF-8,
//   otherwise a string holding the standard base64 (RFC 4648, padded) of
//   the bytes. ext becomes the base64 of its data (the type is dropped).
// - A map key that is not a string is stringified: integers in decimal,
//   true/false/null as those words, floats as %.17g, bin as above, arrays
//   and maps as their compact JSON text. A later duplicate key wins.
//
// Both directions refuse nesting deeper than JMP_MAX_DEPTH arrays/maps (a
// scalar has depth 0, [[]] has depth 2). Converting msgpack first walks the
// bytes with tbp_check, so a lying length prefix cannot make msgpack-c
// reserve memory the input does not back.

#ifndef JSON_MP_H
#define JSON_MP_H

#include <stddef.h>

#include <jansson.h>
#include <msgpack.h>

#define JMP_MAX_DEPTH 32

// jmp_err: results of the conversions.
typedef enum jmp_err {
	JMP_OK = 0,
	JMP_ENOMEM,  // out of memory
	JMP_EDEPTH,  // nested deeper than JMP_MAX_DEPTH
	JMP_EJSON,   // JSON text does not parse
	JMP_EMSGPACK // msgpack bytes malformed, truncated or with extra bytes
} jmp_err;

// jmp_strerror returns a static message for a jmp_err code.
const char *jmp_strerror(int code);

// jmp_pack_json appends the msgpack form of j to b (an initialised buffer
// owned by the caller). On error b may hold a partial object. Returns
// JMP_OK, JMP_EDEPTH or JMP_ENOMEM.
int jmp_pack_json(msgpack_sbuffer *b, const json_t *j);

// jmp_parse parses the JSON text (any value, not only objects; duplicate
// object keys are refused) and appends its msgpack form to b. On JMP_EJSON
// err (may be NULL) receives a message naming line and column. Returns
// JMP_OK, JMP_EJSON, JMP_EDEPTH or JMP_ENOMEM.
int jmp_parse(msgpack_sbuffer *b, const char *text, char *err, size_t errlen);

// jmp_to_json converts exactly one msgpack object, buf[0..len), to JSON. On
// success *jp owns a new reference (json_decref). Returns JMP_OK,
// JMP_EMSGPACK, JMP_EDEPTH or JMP_ENOMEM.
int jmp_to_json(json_t **jp, const void *buf, size_t len);

// jmp_object_to_json converts an unpacked msgpack object; depth is the
// nesting depth of o (0 at the top). Same results as jmp_to_json.
int jmp_object_to_json(json_t **jp, const msgpack_object *o, unsigned depth);

// jmp_base64 returns a malloc'd NUL-terminated base64 text of p[0..n), or
// NULL when out of memory.
char *jmp_base64(const void *p, size_t n);

// jmp_base64_json returns a JSON string holding the base64 of p[0..n), or
// NULL when out of memory.
json_t *jmp_base64_json(const void *p, size_t n);

#endif // JSON_MP_H
