// tbp.c: names of ops, error codes and task states, the helpers for
// tbp_bytes views and the token comparison. The encoders live in
// tbp_encode.c, the checker and decoders in tbp_decode.c, the nng error
// map in tbp_nng.c.

#include <stdlib.h>
#include <string.h>

#include "tbp.h"

#define TBP_OP_NAME_(n, v, s, id, fl) [v] = s,
static const char *const tbp_op_names[TBP_OP_COUNT] = { TBP_OPS(
    TBP_OP_NAME_) };
#undef TBP_OP_NAME_

// The loop always runs TBP_MAX_TOKEN times and folds every byte, so its
// time depends on neither token's content; it branches only on the
// lengths (the wanted one is the operator's, and fixed).
bool
tbp_token_equal(tbp_bytes got, tbp_bytes want)
{
	volatile uint8_t diff = 0;

	if (got.n > TBP_MAX_TOKEN || want.n > TBP_MAX_TOKEN || want.n == 0) {
		return (false);
	}
	diff |= (uint8_t) (got.n != want.n);
	for (uint32_t i = 0; i < TBP_MAX_TOKEN; i++) {
		uint8_t a = i < got.n ? got.p[i] : 0;
		uint8_t w = i < want.n ? want.p[i] : 0;
		diff |= (uint8_t) (a ^ w);
	}
	return (diff == 0);
}

const char *
tbp_op_name(uint32_t op)
{
	if (op >= TBP_OP_COUNT || tbp_op_names[op] == NULL) {
		return ("unknown");
	}
	return (tbp_op_names[op]);
}

// The error texts are looked up with a switch rather than an array indexed
// by code, so that a gap or a negative code in TB_ERRORS can never read out
// of bounds.
const char *
tbp_err_name(int code)
{
	switch (code) {
#define TBP_ERR_NAME_(c, v, n, m) \
	case v:                   \
		return (n);
		TB_ERRORS(TBP_ERR_NAME_)
#undef TBP_ERR_NAME_
	default:
		return ("unknown");
	}
}

const char *
tbp_err_message(int code)
{
	switch (code) {
#define TBP_ERR_MSG_(c, v, n, m) \
	case v:                  \
		return (m);
		TB_ERRORS(TBP_ERR_MSG_)
#undef TBP_ERR_MSG_
	default:
		return ("unknown error");
	}
}

// tbp_states is the one table of state names, for the client and the
// broker. It is searched rather than indexed by state, like the error
// texts above, so that no value can read out of bounds.
#define TBP_STATE_ROW_(c, v, n) { v, n },
static const struct {
	int         state;
	const char *name;
} tbp_states[TBP_NSTATES] = { TB_STATES(TBP_STATE_ROW_) };
#undef TBP_STATE_ROW_

const char *
tbp_state_name(int state)
{
	for (int i = 0; i < TBP_NSTATES; i++) {
		if (tbp_states[i].state == state) {
			return (tbp_states[i].name);
		}
	}
	return ("unknown");
}

int
tbp_state_parse(const char *name, int *statep)
{
	if (name == NULL || statep == NULL) {
		return (TB_EINVAL);
	}
	for (int i = 0; i < TBP_NSTATES; i++) {
		if (strcmp(tbp_states[i].name, name) == 0) {
			*statep = tbp_states[i].state;
			return (TB_OK);
		}
	}
	return (TB_EINVAL);
}

bool
tbp_state_final(int state)
{
	return (state == TB_STATE_DONE || state == TB_STATE_DEAD ||
	    state == TB_STATE_CANCELLED);
}

bool
tbp_bytes_eq(tbp_bytes v, const char *s)
{
	size_t n;

	n = (s == NULL) ? 0 : strlen(s);
	if (n != v.n) {
		return (false);
	}
	// n == 0 must not reach memcmp: an empty view may hold a NULL pointer.
	return (n == 0 || memcmp(v.p, s, n) == 0);
}

char *
tbp_bytes_dup(tbp_bytes v)
{
	char *s;

	if ((s = malloc((size_t) v.n + 1)) == NULL) {
		return (NULL);
	}
	if (v.n > 0) {
		memcpy(s, v.p, v.n);
	}
	s[v.n] = '\0';
	return (s);
}

tbp_bytes
tbp_str(const char *s)
{
	tbp_bytes v;

	if (s == NULL) {
		v.p = NULL;
		v.n = 0;
		return (v);
	}
	v.p = (const uint8_t *) s;
	v.n = (uint32_t) strlen(s);
	return (v);
}
