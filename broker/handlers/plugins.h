// handlers/plugins.h: handler plugins, shared objects named by
// --plugin PATH.
//
// DESIGN. A plugin exports tb_plugin_init and tb_plugin_abi_version (both
// declared in taskbroker/handler.h; TB_PLUGIN_DECLARE() defines the
// second). It is loaded once at start, after the built-in handlers are
// registered, and stays loaded until the loop has ended: its handlers'
// functions live in it. This module also defines the broker side of the
// plugin interface, tb_register_handler and tb_plugin_config.
//
// Threads: loop thread only, at start (plugins_load) and after the loop
// has ended (plugins_unload). The plugin's handlers then run as any
// other's (handlers.h).
// Lock order: none; nothing here locks.
// Ownership: this module owns the dlopen handles and one host per plugin
// until plugins_unload; the registry keeps the handler definitions, whose
// functions point into the plugins.

#ifndef PLUGINS_H
#define PLUGINS_H

#include "config.h"

// plugins_load loads every cfg->plugins path in order: dlopen (RTLD_NOW |
// RTLD_LOCAL), checks that it exports tb_plugin_init and that its
// tb_plugin_abi_version equals TB_HANDLER_ABI, then calls tb_plugin_init
// with a host named after the file (no directory, no ".so"), whose
// configuration is the [plugin NAME] section of cfg. cfg must outlive the
// plugins (until plugins_unload).
//
// Returns TB_OK, or TB_EINVAL after one log line naming the plugin and the
// reason, at the first plugin that does not load, lacks the entry point
// or the ABI mark, was built for another ABI, has the name of one loaded
// before, fails a tb_register_handler call (a taken name, a bad
// definition) or returns non-zero from tb_plugin_init; the broker must not
// start then. The plugins loaded so far stay loaded (handlers registered
// by them point into them) until plugins_unload, which the caller still
// calls. TB_ENOMEM if memory runs out.
//
// Loop thread, once, at start, after handlers_init.
int plugins_load(const config *cfg);

// plugins_unload dlcloses every loaded plugin, in reverse order, and
// forgets them. Call it only after the loop has ended (no handler runs,
// none is called again). Idempotent.
void plugins_unload(void);

#endif // PLUGINS_H
