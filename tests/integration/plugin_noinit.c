// plugin_noinit.c: a test plugin without tb_plugin_init; the broker must
// refuse to start (test_plugins.c).

#include <taskbroker/handler.h>

TB_PLUGIN_DECLARE();

int plugin_noinit_something(void);

int
plugin_noinit_something(void)
{
	return (42);
}
