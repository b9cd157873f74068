// test_cli_json.c: JSON <-> msgpack conversion of the taskbroker tool
// (client/cli/json_mp.c).

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "json_mp.h"

// to_json converts the packed buffer and asserts success.
static json_t *
to_json(const msgpack_sbuffer *b)
{
	json_t *j = NULL;

	assert_int_equal(jmp_to_json(&j, b->data, b->size), JMP_OK);
	assert_non_null(j);
	return (j);
}

// assert_json_text checks j's compact dump and drops j.
static void
assert_json_text(json_t *j, const char *want)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	assert_non_null(s);
	assert_string_equal(s, want);
	free(s);
	json_decref(j);
}

// round_trip parses text, packs it, converts it back and compares.
static void
round_trip(const char *text)
{
	msgpack_sbuffer b;
	json_error_t    je;
	json_t         *in, *out;
	char            err[256];

	msgpack_sbuffer_init(&b);
	assert_int_equal(jmp_parse(&b, text, err, sizeof(err)), JMP_OK);
	out = to_json(&b);
	in  = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	assert_non_null(in);
	assert_true(json_equal(in, out));
	json_decref(in);
	json_decref(out);
	msgpack_sbuffer_destroy(&b);
}

static void
test_round_trip_object(void **state)
{
	(void) state;
	round_trip("{\"argv\":[\"/bin/echo\",\"hi\"],\"n\":-5,\"x\":1.5,"
	           "\"ok\":true,\"no\":false,\"nothing\":null,\"o\":{}}");
}

static void
test_round_trip_scalars(void **state)
{
	(void) state;
	round_trip("0");
	round_trip("-9223372036854775808");
	round_trip("9223372036854775807");
	round_trip("3.25");
	round_trip("true");
	round_trip("null");
	round_trip("\"caf\\u00e9 \\u0000 nul\"");
	round_trip("[]");
	round_trip("[[1,[2,[3]]],{\"a\":[{}]}]");
}

static void
test_json_int_packs_as_msgpack_int(void **state)
{
	msgpack_sbuffer b;

	(void) state;
	msgpack_sbuffer_init(&b);
	assert_int_equal(jmp_parse(&b, "5", NULL, 0), JMP_OK);
	assert_int_equal(b.size, 1);
	assert_int_equal((uint8_t) b.data[0], 0x05); // positive fixint
	msgpack_sbuffer_destroy(&b);
}

static void
test_bin_utf8_becomes_string(void **state)
{
	msgpack_sbuffer b;
	msgpack_packer  pk;

	(void) state;
	msgpack_sbuffer_init(&b);
	msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
	msgpack_pack_bin_with_body(&pk, "hello", 5);
	assert_json_text(to_json(&b), "\"hello\"");
	msgpack_sbuffer_destroy(&b);
}

static void
test_bin_not_utf8_becomes_base64(void **state)
{
	msgpack_sbuffer b;
	msgpack_packer  pk;

	(void) state;
	msgpack_sbuffer_init(&b);
	msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
	msgpack_pack_bin_with_body(&pk, "\xff\xfe\x00", 3);
	assert_json_text(to_json(&b), "\"//4A\"");
	msgpack_sbuffer_destroy(&b);
}

static void
test_str_not_utf8_becomes_base64(void **state)
{
	msgpack_sbuffer b;
	msgpack_packer  pk;

	(void) state;
	msgpack_sbuffer_init(&b);
	msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
	msgpack_pack_str_with_body(&pk, "\xc3\x28", 2); // bad continuation
	assert_json_text(to_json(&b), "\"wyg=\"");
	msgpack_sbuffer_destroy(&b);
}

static void
test_ext_becomes_base64(void **state)
{
	msgpack_sbuffer b;
	msgpack_packer  pk;

	(void) state;
	msgpack_sbuffer_init(&b);
	msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
	msgpack_pack_ext_with_body(&pk, "foo", 3, 7);
	assert_json_text(to_json(&b), "\"Zm9v\"");
	msgpack_sbuffer_destroy(&b);
}

static void
test_non_string_keys_are_stringified(void **state)
{
	msgpack_sbuffer b;
	msgpack_packer  pk;

	(void) state;
	msgpack_sbuffer_init(&b);
	msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 7);
	msgpack_pack_int64(&pk, 1);
	msgpack_pack_str_with_body(&pk, "one", 3);
	msgpack_pack_int64(&pk, -2);
	msgpack_pack_nil(&pk);
	msgpack_pack_true(&pk);
	msgpack_pack_int64(&pk, 3);
	msgpack_pack_nil(&pk);
	msgpack_pack_int64(&pk, 4);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int64(&pk, 1);
	msgpack_pack_str_with_body(&pk, "a", 1);
	msgpack_pack_int64(&pk, 5);
	msgpack_pack_bin_with_body(&pk, "\xfe", 1);
	msgpack_pack_int64(&pk, 6);
	msgpack_pack_str_with_body(&pk, "\xff", 1); // a str key, not UTF-8
	msgpack_pack_int64(&pk, 7);
	assert_json_text(to_json(&b),
	    "{\"1\":\"one\",\"-2\":null,\"true\":3,\"null\":4,"
	    "\"[1,\\\"a\\\"]\":5,\"/g==\":6,\"/w==\":7}");
	msgpack_sbuffer_destroy(&b);
}

static void
test_duplicate_msgpack_keys_later_wins(void **state)
{
	msgpack_sbuffer b;
	msgpack_packer  pk;

	(void) state;
	msgpack_sbuffer_init(&b);
	msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	msgpack_pack_str_with_body(&pk, "a", 1);
	msgpack_pack_int64(&pk, 1);
	msgpack_pack_int64(&pk, 7); // stringifies to "7"
	msgpack_pack_int64(&pk, 2);
	msgpack_pack_str_with_body(&pk, "a", 1);
	msgpack_pack_int64(&pk, 3);
	assert_json_text(to_json(&b), "{\"a\":3,\"7\":2}");
	msgpack_sbuffer_destroy(&b);
}

static void
test_big_uint_becomes_real(void **state)
{
	msgpack_sbuffer b;
	msgpack_packer  pk;
	json_t         *j;

	(void) state;
	msgpack_sbuffer_init(&b);
	msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
	msgpack_pack_uint64(&pk, UINT64_MAX);
	j = to_json(&b);
	assert_true(json_is_real(j));
	assert_true(json_real_value(j) > 1.8e19);
	json_decref(j);
	msgpack_sbuffer_destroy(&b);
}

static void
test_nan_becomes_null(void **state)
{
	msgpack_sbuffer b;
	msgpack_packer  pk;

	(void) state;
	msgpack_sbuffer_init(&b);
	msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_double(&pk, NAN);
	msgpack_pack_float(&pk, 0.5f);
	assert_json_text(to_json(&b), "[null,0.5]");
	msgpack_sbuffer_destroy(&b);
}

// nested returns n nested JSON arrays: "[[...]]".
static char *
nested(unsigned n)
{
	char *s = malloc(2 * n + 1);

	assert_non_null(s);
	memset(s, '[', n);
	memset(s + n, ']', n);
	s[2 * n] = '\0';
	return (s);
}

static void
test_json_depth_at_limit_is_accepted(void **state)
{
	msgpack_sbuffer b;
	char           *s = nested(JMP_MAX_DEPTH);
	json_t         *j;

	(void) state;
	msgpack_sbuffer_init(&b);
	assert_int_equal(jmp_parse(&b, s, NULL, 0), JMP_OK);
	assert_int_equal(jmp_to_json(&j, b.data, b.size), JMP_OK);
	json_decref(j);
	msgpack_sbuffer_destroy(&b);
	free(s);
}

static void
test_json_too_deep_is_rejected(void **state)
{
	msgpack_sbuffer b;
	char           *s = nested(JMP_MAX_DEPTH + 1);
	char            err[128];

	(void) state;
	msgpack_sbuffer_init(&b);
	assert_int_equal(jmp_parse(&b, s, err, sizeof(err)), JMP_EDEPTH);
	assert_string_equal(err, "nested too deeply");
	msgpack_sbuffer_destroy(&b);
	free(s);
}

static void
test_msgpack_too_deep_is_rejected(void **state)
{
	uint8_t buf[JMP_MAX_DEPTH + 2];
	json_t *j = NULL;

	(void) state;
	memset(buf, 0x91, JMP_MAX_DEPTH + 1); // fixarray of one, 33 deep
	buf[JMP_MAX_DEPTH + 1] = 0xc0;        // nil
	assert_int_equal(jmp_to_json(&j, buf, sizeof(buf)), JMP_EDEPTH);
	assert_null(j);

	// Far deeper than any stack, still a clean error.
	uint8_t deep[10001];
	memset(deep, 0x91, sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = 0xc0;
	assert_int_equal(jmp_to_json(&j, deep, sizeof(deep)), JMP_EDEPTH);
}

static void
test_bad_json_is_rejected_with_position(void **state)
{
	msgpack_sbuffer b;
	char            err[256];

	(void) state;
	msgpack_sbuffer_init(&b);
	assert_int_equal(
	    jmp_parse(&b, "{\"a\": [1, 2,}", err, sizeof(err)), JMP_EJSON);
	assert_non_null(strstr(err, "line 1, column"));
	assert_int_equal(jmp_parse(&b, "", err, sizeof(err)), JMP_EJSON);
	assert_int_equal(jmp_parse(&b, "{} {}", err, sizeof(err)), JMP_EJSON);
	msgpack_sbuffer_destroy(&b);
}

static void
test_duplicate_json_keys_are_rejected(void **state)
{
	msgpack_sbuffer b;

	(void) state;
	msgpack_sbuffer_init(&b);
	assert_int_equal(
	    jmp_parse(&b, "{\"a\":1,\"a\":2}", NULL, 0), JMP_EJSON);
	msgpack_sbuffer_destroy(&b);
}

static void
test_truncated_msgpack_is_rejected(void **state)
{
	static const uint8_t str[] = { 0xa5, 'a', 'b' }; // str of 5, 2 given
	static const uint8_t arr[] = { 0x92, 0x01 };     // array of 2, 1 given
	static const uint8_t u32[] = { 0xce, 0x00, 0x01 };
	json_t              *j     = NULL;

	(void) state;
	assert_int_equal(jmp_to_json(&j, str, sizeof(str)), JMP_EMSGPACK);
	assert_int_equal(jmp_to_json(&j, arr, sizeof(arr)), JMP_EMSGPACK);
	assert_int_equal(jmp_to_json(&j, u32, sizeof(u32)), JMP_EMSGPACK);
	assert_int_equal(jmp_to_json(&j, str, 0), JMP_EMSGPACK);
	assert_int_equal(jmp_to_json(&j, NULL, 0), JMP_EMSGPACK);
	assert_null(j);
}

static void
test_lying_length_is_rejected(void **state)
{
	// An array32 header claiming 4 billion elements, then nothing.
	static const uint8_t arr[] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0 };
	static const uint8_t map[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
	json_t              *j     = NULL;

	(void) state;
	assert_int_equal(jmp_to_json(&j, arr, sizeof(arr)), JMP_EMSGPACK);
	assert_int_equal(jmp_to_json(&j, map, sizeof(map)), JMP_EMSGPACK);
	assert_null(j);
}

static void
test_trailing_bytes_are_rejected(void **state)
{
	static const uint8_t two[] = { 0x01, 0x02 };
	json_t              *j     = NULL;

	(void) state;
	assert_int_equal(jmp_to_json(&j, two, sizeof(two)), JMP_EMSGPACK);
	assert_null(j);
}

static void
test_reserved_byte_is_rejected(void **state)
{
	static const uint8_t bad[] = { 0xc1 };
	json_t              *j     = NULL;

	(void) state;
	assert_int_equal(jmp_to_json(&j, bad, sizeof(bad)), JMP_EMSGPACK);
	assert_null(j);
}

static void
test_base64_matches_rfc4648(void **state)
{
	static const char *want[] = { "", "Zg==", "Zm8=", "Zm9v",
		"Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };

	(void) state;
	for (size_t n = 0; n <= 6; n++) {
		char *s = jmp_base64("foobar", n);

		assert_non_null(s);
		assert_string_equal(s, want[n]);
		free(s);
	}
}

static void
test_strerror_names_every_code(void **state)
{
	(void) state;
	assert_string_equal(jmp_strerror(JMP_OK), "success");
	assert_string_equal(jmp_strerror(JMP_EDEPTH), "nested too deeply");
	assert_string_equal(jmp_strerror(999), "unknown error");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_object),
		cmocka_unit_test(test_round_trip_scalars),
		cmocka_unit_test(test_json_int_packs_as_msgpack_int),
		cmocka_unit_test(test_bin_utf8_becomes_string),
		cmocka_unit_test(test_bin_not_utf8_becomes_base64),
		cmocka_unit_test(test_str_not_utf8_becomes_base64),
		cmocka_unit_test(test_ext_becomes_base64),
		cmocka_unit_test(test_non_string_keys_are_stringified),
		cmocka_unit_test(test_duplicate_msgpack_keys_later_wins),
		cmocka_unit_test(test_big_uint_becomes_real),
		cmocka_unit_test(test_nan_becomes_null),
		cmocka_unit_test(test_json_depth_at_limit_is_accepted),
		cmocka_unit_test(test_json_too_deep_is_rejected),
		cmocka_unit_test(test_msgpack_too_deep_is_rejected),
		cmocka_unit_test(test_bad_json_is_rejected_with_position),
		cmocka_unit_test(test_duplicate_json_keys_are_rejected),
		cmocka_unit_test(test_truncated_msgpack_is_rejected),
		cmocka_unit_test(test_lying_length_is_rejected),
		cmocka_unit_test(test_trailing_bytes_are_rejected),
		cmocka_unit_test(test_reserved_byte_is_rejected),
		cmocka_unit_test(test_base64_matches_rfc4648),
		cmocka_unit_test(test_strerror_names_every_code),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
