// nngfix.c: the broker's own sendmsg(2), which keeps nng 1.5.2's
// listeners from stopping when a peer leaves during the SP handshake.
//
// DESIGN. nng 1.5.2 maps EPIPE to NNG_ECLOSED. A listener writes its SP
// header first; when the peer has already gone (a bare connect() and
// close(): a port scan, a health check, a second broker probing the ipc
// path), that write fails with EPIPE, the handshake ends with NNG_ECLOSED,
// and the listener core takes that for "listener closed" and never accepts
// again (nanomsg/nng#1518, #1446). Every nng write to a socket, ipc or tcp
// (tls runs over tcp), is a sendmsg call from libnng, so this executable
// defines sendmsg: a definition in the executable comes first in symbol
// lookup, and libnng's calls reach it. It calls the next sendmsg (libc's,
// or a sanitizer's) and turns EPIPE into ECONNRESET, which means the same
// thing to every caller ("the peer is gone") and which nng's listener
// treats as a remote condition: it accepts the next connection at once.
// Success costs nothing extra: errno is only looked at after a failure.
// guard.h covers what this cannot (other ways for a handshake to end with
// NNG_ECLOSED).
//
// Threads: any (every caller of sendmsg); the pointer to the next
// sendmsg is resolved once (pthread_once).
// Lock order: none.
// Ownership: none.

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fault.h"

typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);

static sendmsg_fn     next_sendmsg;
static pthread_once_t next_once = PTHREAD_ONCE_INIT;

static void
nngfix_resolve(void)
{
	next_sendmsg = (sendmsg_fn) dlsym(RTLD_NEXT, "sendmsg");
}

ssize_t
sendmsg(int fd, const struct msghdr *msg, int flags)
{
	ssize_t n;

	(void) pthread_once(&next_once, nngfix_resolve);
	if (next_sendmsg != NULL) {
		n = next_sendmsg(fd, msg, flags);
	} else {
		n = syscall(SYS_sendmsg, fd, msg, flags);
	}
	// The fault site leaves EPIPE as nng would have seen it (fault.h).
	if (n < 0 && errno == EPIPE && !tb_fault(TB_FAULT_NNG_EPIPE)) {
		errno = ECONNRESET;
	}
	return (n);
}
