// client_impl.h: helpers shared by the files of libtaskbroker. Private: not
// installed, not exported.
//
// Threads: any thread. Lock order: no locks. Ownership: nothing kept.

#ifndef TB_CLIENT_IMPL_H
#define TB_CLIENT_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include <nng/nng.h>

// tbc_url_ok is true if url looks like "scheme://rest". nng itself checks
// the rest at dial time; this only rejects garbage early without calling
// into nng (which must not be touched before the first real use, see
// tb_client_open). Any thread.
bool tbc_url_ok(const char *url);

// tbc_close_socket closes s as nng_close does, but returns after at most a
// couple of seconds even if nng_close hangs (nng 1.5.2 can, when the close
// races a reconnection to a peer that has gone; see sockclose.c). Any
// thread; s must not be used afterwards.
void tbc_close_socket(nng_socket s);

#endif // TB_CLIENT_IMPL_H
