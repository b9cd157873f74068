// handlers.c: placeholder until the module lands.
