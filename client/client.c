// client.c: placeholder
