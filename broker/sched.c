// sched.c: placeholder until the module lands.
