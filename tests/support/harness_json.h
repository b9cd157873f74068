// harness_json.h: JSON checks for the integration tests that read the CLI's
// --json output. Header-only, so that only the tests that link jansson
// include it (harness.c does not depend on jansson).

#ifndef TBH_HARNESS_JSON_H
#define TBH_HARNESS_JSON_H

#include <jansson.h>

#include "harness.h"

// tbh_json_parse parses s as exactly one JSON value (the end-of-input check
// stays on) and returns it (json_decref it); otherwise it fails the test,
// naming what (the command that printed s) and printing s.
static inline json_t *
tbh_json_parse(const char *what, const char *s)
{
	json_error_t jerr;
	json_t      *j = json_loads(s, 0, &jerr);

	if (j == NULL) {
		print_error("%s: not one JSON value: %s (line %d)\n%s\n", what,
		    jerr.text, jerr.line, s);
		fail();
	}
	return (j);
}

#endif // TBH_HARNESS_JSON_H
