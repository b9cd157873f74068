// handlers/plugins.c: see plugins.h. Everything here runs on the loop
// thread, at start (plugins_load) or after the loop has ended
// (plugins_unload).
//
// The executable exports its symbols (ENABLE_EXPORTS in CMake), so a
// plugin's calls to tb_register_handler and the tb_run_* accessors resolve
// against the broker itself. Plugins are opened RTLD_LOCAL: one plugin's
// symbols never satisfy another's, and two plugins may use the same names.

#include "handlers/plugins.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <taskbroker/defs.h>
#include <taskbroker/handler.h>

#include "handlers/handlers.h"
#include "log.h"

// tb_plugin_host is one loaded plugin. Opaque to the plugin.
struct tb_plugin_host {
	char         *name; // file name without directory and ".so"
	const char   *path; // as configured; owned by cfg
	const config *cfg;
	void         *dl;        // the dlopen handle, NULL if none
	bool          in_init;   // tb_register_handler is allowed
	int           reg_rv;    // first failed registration, TB_OK if none
	size_t        nhandlers; // registered by it
};

static tb_plugin_host *hosts; // every plugin opened, in load order
static size_t          nhosts;

// plugin_name returns a malloc'd copy of path's file name without ".so",
// or NULL (no memory).
static char *
plugin_name(const char *path)
{
	const char *base = strrchr(path, '/');
	size_t      len;
	char       *name;

	base = base != NULL ? base + 1 : path;
	len  = strlen(base);
	if (len > 3 && strcmp(base + len - 3, ".so") == 0) {
		len -= 3;
	}
	if ((name = malloc(len + 1)) == NULL) {
		return (NULL);
	}
	memcpy(name, base, len);
	name[len] = '\0';
	return (name);
}

// plugin_open loads and initialises one plugin into h (zeroed, name and
// path set). Returns TB_OK or TB_EINVAL after logging why; h->dl is set
// whenever the object was opened, so plugins_unload closes it.
static int
plugin_open(tb_plugin_host *h)
{
	int (*init)(tb_plugin_host *);
	void       *sym;
	const int  *abi;
	const char *err;
	int         rv;

	if ((h->dl = dlopen(h->path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		err = dlerror();
		log_err("plugin %s: cannot load %s: %s", h->name, h->path,
		    err != NULL ? err : "unknown error");
		return (TB_EINVAL);
	}
	if ((sym = dlsym(h->dl, "tb_plugin_init")) == NULL) {
		log_err("plugin %s: %s does not export tb_plugin_init",
		    h->name, h->path);
		return (TB_EINVAL);
	}
	// POSIX lets dlsym's void * become a function pointer; ISO C does
	// not say so, hence the copy instead of a cast.
	memcpy(&init, &sym, sizeof(init));
	if ((abi = dlsym(h->dl, "tb_plugin_abi_version")) == NULL) {
		log_err("plugin %s: %s does not export tb_plugin_abi_version "
		        "(add TB_PLUGIN_DECLARE() to it)",
		    h->name, h->path);
		return (TB_EINVAL);
	}
	if (*abi != TB_HANDLER_ABI) {
		log_err(
		    "plugin %s: %s was built for handler ABI %d, the broker "
		    "has %d; rebuild it against this taskbroker/handler.h",
		    h->name, h->path, *abi, TB_HANDLER_ABI);
		return (TB_EINVAL);
	}
	h->in_init = true;
	rv         = init(h);
	h->in_init = false;
	if (h->reg_rv != TB_OK) {
		// tb_register_handler has logged the reason already.
		return (h->reg_rv == TB_ENOMEM ? TB_ENOMEM : TB_EINVAL);
	}
	if (rv != 0) {
		log_err("plugin %s: tb_plugin_init in %s returned %d", h->name,
		    h->path, rv);
		return (TB_EINVAL);
	}
	log_info("plugin %s: loaded %s (%zu handlers)", h->name, h->path,
	    h->nhandlers);
	return (TB_OK);
}

int
plugins_load(const config *cfg)
{
	const config_list *l = &cfg->plugins;
	int                rv;

	if (l->n == 0) {
		return (TB_OK);
	}
	if (hosts != NULL) {
		// A second call would register every handler again.
		log_err("plugins: already loaded");
		return (TB_EINVAL);
	}
	if ((hosts = calloc(l->n, sizeof(*hosts))) == NULL) {
		return (TB_ENOMEM);
	}
	for (size_t i = 0; i < l->n; i++) {
		tb_plugin_host *h = &hosts[i];

		h->path = l->v[i];
		h->cfg  = cfg;
		if ((h->name = plugin_name(h->path)) == NULL) {
			return (TB_ENOMEM);
		}
		nhosts++; // plugins_unload frees it from here
		for (size_t j = 0; j < i; j++) {
			if (strcmp(hosts[j].name, h->name) == 0) {
				// Both would read the same [plugin NAME].
				log_err("plugin %s: %s has the name of %s, "
				        "loaded before",
				    h->name, h->path, hosts[j].path);
				return (TB_EINVAL);
			}
		}
		if ((rv = plugin_open(h)) != TB_OK) {
			return (rv);
		}
	}
	return (TB_OK);
}

void
plugins_unload(void)
{
	// Reverse order, as a later plugin may use an earlier one.
	for (size_t i = nhosts; i > 0; i--) {
		tb_plugin_host *h = &hosts[i - 1];

		if (h->dl != NULL && dlclose(h->dl) != 0) {
			log_warn("plugin %s: dlclose: %s", h->name, dlerror());
		}
		free(h->name);
	}
	free(hosts);
	hosts  = NULL;
	nhosts = 0;
}

int
tb_register_handler(tb_plugin_host *host, const tb_handler_def *def)
{
	const char *hname;
	int         rv;

	if (host == NULL) {
		log_err("plugin: tb_register_handler called without a host");
		return (-1);
	}
	hname = def != NULL && def->name != NULL ? def->name : "(null)";
	if (!host->in_init) {
		// The registry is read without a lock once the loop runs.
		log_err("plugin %s: handler %s: tb_register_handler is only "
		        "allowed in tb_plugin_init",
		    host->name, hname);
		return (-1);
	}
	if ((rv = handlers_register(def)) != TB_OK) {
		log_err("plugin %s: %s: cannot register handler %s: %s",
		    host->name, host->path, hname,
		    rv == TB_EBUSY        ? "the name is taken"
		        : rv == TB_EINVAL ? "bad definition (name 1..128 "
		                            "bytes, mode, run function)"
		                          : "out of memory");
		if (host->reg_rv == TB_OK) {
			host->reg_rv = rv;
		}
		return (-1);
	}
	host->nhandlers++;
	log_debug("plugin %s: handler %s registered (%s)", host->name, hname,
	    def->mode == TB_HANDLER_POOL ? "pool" : "loop");
	return (0);
}

const char *
tb_plugin_config(tb_plugin_host *host, const char *key)
{
	if (host == NULL || key == NULL) {
		return (NULL);
	}
	return (config_plugin_value(host->cfg, host->name, key));
}
