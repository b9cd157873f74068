// pidlock.h: advisory locks that make a data directory, and an ipc socket
// path, one broker's for as long as it runs.
//
// DESIGN. A lock is an flock(2) on a small file that holds the owner's
// pid. The kernel drops it when the process ends, however it ends (kill -9
// included), so a stale lock file never stops a start; a live one makes a
// second broker refuse to start, naming the holder's pid, before it has
// touched the database or the socket. The socket matters as much as the
// data: nng probes an ipc path by connecting to it before it listens, and
// with nng 1.5.2 that probe alone stops the running broker's listener from
// accepting (see the README), so a second broker must not get that far.
//
// Threads: the main thread, before the loop starts.
// Lock order: no mutexes.
// Ownership: a taken lock belongs to the process; pidlock_release (or the
// process's end) gives it back. The descriptor is close-on-exec, so child
// processes never hold it.

#ifndef PIDLOCK_H
#define PIDLOCK_H

// pidlock_take locks path (created 0644 if missing) and writes our pid in
// it; what names the locked thing in the error ("data directory data").
// Returns the lock's descriptor (>= 0), or -1 after logging why: another
// process holds it (with its pid) or the file cannot be opened.
int pidlock_take(const char *path, const char *what);

// pidlock_url_path returns the malloc'd lock path of an ipc:// url (its
// socket path + ".lock"), or NULL for other transports (or no memory:
// *errp is then set to -1).
char *pidlock_url_path(const char *url, int *errp);

// pidlock_release closes a descriptor pidlock_take returned (-1: none).
void pidlock_release(int fd);

#endif // PIDLOCK_H
