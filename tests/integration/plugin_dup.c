// plugin_dup.c: a test plugin that registers "noop", a built-in's name;
// the broker must refuse to start (test_plugins.c).

#include <taskbroker/handler.h>

TB_PLUGIN_DECLARE();

static int
dup_run(tb_run *r, void *hdata)
{
	(void) hdata;
	tb_run_finish(r);
	return (0);
}

int
tb_plugin_init(tb_plugin_host *host)
{
	tb_handler_def def = {
		.name = "noop", .mode = TB_HANDLER_LOOP, .run = dup_run
	};

	// Ignores the result on purpose: the broker refuses the start even
	// if the plugin does not pass the failure on.
	(void) tb_register_handler(host, &def);
	return (0);
}
