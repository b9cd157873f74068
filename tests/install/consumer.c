// consumer.c: a program built against the installed libtaskbroker (by
// tests/install/check.sh, once with pkg-config and once with CMake).
// It prints the library's name for a stable error code, which needs only
// the library, not a broker.

#include <stdio.h>
#include <string.h>

#include <taskbroker.h>

int
main(void)
{
	const char *name = tb_errname(TB_ETIMEDOUT);

	printf("%s\n", name);
	return (strcmp(name, "timed_out") == 0 ? 0 : 1);
}
