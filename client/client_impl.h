// client_impl.h: helpers shared by the files of libtaskbroker. Private: not
// installed, not exported.

#ifndef TB_CLIENT_IMPL_H
#define TB_CLIENT_IMPL_H

#include <stdbool.h>
#include <stddef.h>

// tbc_nng_err converts an nng error code from a send, receive or socket
// option call to a tb_err: NNG_ETIMEDOUT is TB_ETIMEDOUT, NNG_ECLOSED is
// TB_ECLOSED, connection failures are TB_EUNREACHABLE, anything else
// TB_ESYSTEM. Any thread.
int tbc_nng_err(int rv);

// tbc_dial_err converts an nng_dial error: a malformed or unsupported url
// is TB_EINVAL, a broker that is not there TB_EUNREACHABLE. Any thread.
int tbc_dial_err(int rv);

// tbc_url_ok is true if url looks like "scheme://rest". nng itself checks
// the rest at dial time; this only rejects garbage early without calling
// into nng (which must not be touched before the first real use, see
// tb_client_open). Any thread.
bool tbc_url_ok(const char *url);

#endif // TB_CLIENT_IMPL_H
