// events.c: placeholder until the module lands.
