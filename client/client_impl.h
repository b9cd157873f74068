// client_impl.h: helpers shared by the files of libtaskbroker. Private: not
// installed, not exported.
//
// Threads: any thread. Lock order: no locks. Ownership: nothing kept.

#ifndef TB_CLIENT_IMPL_H
#define TB_CLIENT_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include <nng/nng.h>

#include <taskbroker.h>

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

// tbc_conn is what a client or a subscription proves to the broker, as
// resolved from tb_conn_opts and the environment (conn.c). Every field is
// NULL (0) when not set.
typedef struct tbc_conn {
	char  *token; // sent with every request
	size_t token_len;
	char  *ca_file;     // verifies the broker; NULL: the system's store
	char  *cert_pem;    // the client's certificate chain (mutual TLS)
	char  *key_pem;     // its private key
	size_t key_len;     // of key_pem, for wiping it
	char  *server_name; // NULL: the url's host
} tbc_conn;

// tbc_conn_init resolves o (NULL: every field from the environment) into
// cn and reads the files it names. Returns TB_OK, TB_EINVAL (a file is
// missing or unreadable, a certificate without its key or the reverse, a
// token that is empty, over TBP_MAX_TOKEN bytes or holds a NUL) or
// TB_ENOMEM; on an error cn holds nothing. Does not touch nng. Any thread.
int tbc_conn_init(tbc_conn *cn, const tb_conn_opts *o);

// tbc_conn_fini wipes and frees what cn holds. Safe on a zeroed cn.
void tbc_conn_fini(tbc_conn *cn);

// tbc_url_tls is true for a tls+tcp:// (tls+tcp4, tls+tcp6) url.
bool tbc_url_tls(const char *url);

// tbc_dial dials url on s as nng_dial(s, url, NULL, flags) does, with
// cn's TLS settings if url is tls+tcp. Returns a tb_err: nng's codes
// mapped as tbp_nng_err does for a dial, and TB_EINVAL for TLS material
// nng cannot use or a url without a host to verify. Any thread.
int tbc_dial(nng_socket s, const char *url, const tbc_conn *cn, int flags);

#endif // TB_CLIENT_IMPL_H
