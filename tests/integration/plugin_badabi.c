// plugin_badabi.c: a test plugin that claims another handler ABI; the
// broker must refuse it before calling tb_plugin_init (test_plugins.c).

#include <stdlib.h>

#include <taskbroker/handler.h>

const int tb_plugin_abi_version = 999;

int
tb_plugin_init(tb_plugin_host *host)
{
	(void) host;
	abort(); // never called
}
