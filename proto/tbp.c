// tbp.c: placeholder
