// fault_vfs.c: a SQLite VFS that fails the task store's WAL writes and
// fsyncs on demand, for tests; see fault.h (tb_fault_vfs). Compiled only
// into test builds (TB_FAULT_INJECTION).
//
// DESIGN. As SQLite's own test_vfs.c and faultsim do, the shim is a VFS
// "tbfault" that forwards every call to the default VFS ("unix") and
// wraps each file it opens in a small header: the io methods of the
// wrapper forward to the real file, which lives right after the header
// (szOsFile is the real size plus the header). Two methods ask the fault
// seam first: xWrite on a file opened as a WAL (SQLITE_OPEN_WAL) hits
// store_wal_write, then store_wal_full, and fails without writing;
// xSync on any file hits store_fsync and fails after the real sync (the
// data may be on disk, as when a real fsync reports an error). SQLite then
// takes its usual error paths: the commit fails, the transaction rolls
// back, and the pager recovers once the writer resets its statements.
//
// Threads: registration runs once (pthread_once); the methods run on the
// thread that uses the connection, and the seam's counters are atomics.
// Lock order: no locks of its own.
// Ownership: the VFS and its method tables are static; a wrapped file is
// SQLite's memory.

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <string.h>

#include "fault.h"
#include "log.h"

#define FVFS_NAME "tbfault"

// fvfs_file is a wrapped file: the header, then the real file.
typedef struct fvfs_file {
	sqlite3_file  base; // base.pMethods: the wrapper's methods, or NULL
	sqlite3_file *real; // points just past the header
	bool          wal;  // opened with SQLITE_OPEN_WAL
} fvfs_file;

// The real file's memory follows the header, aligned as SQLite aligns
// sqlite3_file (8 bytes).
#define FVFS_HDR ((sizeof(fvfs_file) + 7) & ~(size_t) 7)

static sqlite3_vfs    fvfs;
static sqlite3_vfs   *fvfs_real;
static pthread_once_t fvfs_once = PTHREAD_ONCE_INIT;
static bool           fvfs_ok;

static sqlite3_file *
fvfs_sub(sqlite3_file *f)
{
	return (((fvfs_file *) f)->real);
}

static int
fvfs_close(sqlite3_file *f)
{
	sqlite3_file *r  = fvfs_sub(f);
	int           rc = r->pMethods->xClose(r);

	f->pMethods = NULL;
	return (rc);
}

static int
fvfs_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xRead(r, buf, n, off));
}

static int
fvfs_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	sqlite3_file *r = fvfs_sub(f);

	if (((fvfs_file *) f)->wal) {
		if (tb_fault(TB_FAULT_STORE_WAL_WRITE)) {
			return (SQLITE_IOERR_WRITE);
		}
		if (tb_fault(TB_FAULT_STORE_WAL_FULL)) {
			return (SQLITE_FULL);
		}
	}
	return (r->pMethods->xWrite(r, buf, n, off));
}

static int
fvfs_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xTruncate(r, size));
}

static int
fvfs_sync(sqlite3_file *f, int flags)
{
	sqlite3_file *r  = fvfs_sub(f);
	int           rc = r->pMethods->xSync(r, flags);

	if (rc == SQLITE_OK && tb_fault(TB_FAULT_STORE_FSYNC)) {
		rc = SQLITE_IOERR_FSYNC;
	}
	return (rc);
}

static int
fvfs_file_size(sqlite3_file *f, sqlite3_int64 *sizep)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xFileSize(r, sizep));
}

static int
fvfs_lock(sqlite3_file *f, int lock)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xLock(r, lock));
}

static int
fvfs_unlock(sqlite3_file *f, int lock)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xUnlock(r, lock));
}

static int
fvfs_check_reserved(sqlite3_file *f, int *outp)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xCheckReservedLock(r, outp));
}

static int
fvfs_file_control(sqlite3_file *f, int op, void *arg)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xFileControl(r, op, arg));
}

static int
fvfs_sector_size(sqlite3_file *f)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xSectorSize(r));
}

static int
fvfs_device_chars(sqlite3_file *f)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xDeviceCharacteristics(r));
}

static int
fvfs_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **p)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xShmMap(r, pg, pgsz, extend, p));
}

static int
fvfs_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xShmLock(r, off, n, flags));
}

static void
fvfs_shm_barrier(sqlite3_file *f)
{
	sqlite3_file *r = fvfs_sub(f);

	r->pMethods->xShmBarrier(r);
}

static int
fvfs_shm_unmap(sqlite3_file *f, int del)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xShmUnmap(r, del));
}

static int
fvfs_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xFetch(r, off, n, pp));
}

static int
fvfs_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	sqlite3_file *r = fvfs_sub(f);

	return (r->pMethods->xUnfetch(r, off, p));
}

// fvfs_methods_v3 serves real files whose methods are version 3 (the
// unix VFS's); fvfs_methods_v1 those without shared memory or mmap (a
// file the unix VFS opens with its "nolock" methods has version 3 too,
// but a journal may have 1).
static const sqlite3_io_methods fvfs_methods_v3 = {
	.iVersion               = 3,
	.xClose                 = fvfs_close,
	.xRead                  = fvfs_read,
	.xWrite                 = fvfs_write,
	.xTruncate              = fvfs_truncate,
	.xSync                  = fvfs_sync,
	.xFileSize              = fvfs_file_size,
	.xLock                  = fvfs_lock,
	.xUnlock                = fvfs_unlock,
	.xCheckReservedLock     = fvfs_check_reserved,
	.xFileControl           = fvfs_file_control,
	.xSectorSize            = fvfs_sector_size,
	.xDeviceCharacteristics = fvfs_device_chars,
	.xShmMap                = fvfs_shm_map,
	.xShmLock               = fvfs_shm_lock,
	.xShmBarrier            = fvfs_shm_barrier,
	.xShmUnmap              = fvfs_shm_unmap,
	.xFetch                 = fvfs_fetch,
	.xUnfetch               = fvfs_unfetch,
};

static const sqlite3_io_methods fvfs_methods_v1 = {
	.iVersion               = 1,
	.xClose                 = fvfs_close,
	.xRead                  = fvfs_read,
	.xWrite                 = fvfs_write,
	.xTruncate              = fvfs_truncate,
	.xSync                  = fvfs_sync,
	.xFileSize              = fvfs_file_size,
	.xLock                  = fvfs_lock,
	.xUnlock                = fvfs_unlock,
	.xCheckReservedLock     = fvfs_check_reserved,
	.xFileControl           = fvfs_file_control,
	.xSectorSize            = fvfs_sector_size,
	.xDeviceCharacteristics = fvfs_device_chars,
};

static int
fvfs_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
    int *outflagsp)
{
	fvfs_file    *w = (fvfs_file *) f;
	sqlite3_file *r = (sqlite3_file *) ((char *) f + FVFS_HDR);
	int           rc;

	(void) vfs;
	memset(w, 0, sizeof(*w)); // pMethods NULL until the real open works
	w->real = r;
	w->wal  = (flags & SQLITE_OPEN_WAL) != 0;
	rc      = fvfs_real->xOpen(fvfs_real, name, r, flags, outflagsp);
	if (r->pMethods == NULL) {
		return (rc); // nothing to close: SQLite calls no method of f
	}
	w->base.pMethods =
	    r->pMethods->iVersion >= 3 ? &fvfs_methods_v3 : &fvfs_methods_v1;
	return (rc);
}

static int
fvfs_delete(sqlite3_vfs *vfs, const char *name, int syncdir)
{
	(void) vfs;
	return (fvfs_real->xDelete(fvfs_real, name, syncdir));
}

static int
fvfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *outp)
{
	(void) vfs;
	return (fvfs_real->xAccess(fvfs_real, name, flags, outp));
}

static int
fvfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void) vfs;
	return (fvfs_real->xFullPathname(fvfs_real, name, n, out));
}

static void *
fvfs_dlopen(sqlite3_vfs *vfs, const char *name)
{
	(void) vfs;
	return (fvfs_real->xDlOpen(fvfs_real, name));
}

static void
fvfs_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
	(void) vfs;
	fvfs_real->xDlError(fvfs_real, n, msg);
}

static void (*fvfs_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	(void) vfs;
	return (fvfs_real->xDlSym(fvfs_real, h, sym));
}

static void
fvfs_dlclose(sqlite3_vfs *vfs, void *h)
{
	(void) vfs;
	fvfs_real->xDlClose(fvfs_real, h);
}

static int
fvfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void) vfs;
	return (fvfs_real->xRandomness(fvfs_real, n, out));
}

static int
fvfs_sleep(sqlite3_vfs *vfs, int us)
{
	(void) vfs;
	return (fvfs_real->xSleep(fvfs_real, us));
}

static int
fvfs_current_time(sqlite3_vfs *vfs, double *tp)
{
	(void) vfs;
	return (fvfs_real->xCurrentTime(fvfs_real, tp));
}

static int
fvfs_last_error(sqlite3_vfs *vfs, int n, char *msg)
{
	(void) vfs;
	return (fvfs_real->xGetLastError(fvfs_real, n, msg));
}

static int
fvfs_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *tp)
{
	(void) vfs;
	return (fvfs_real->xCurrentTimeInt64(fvfs_real, tp));
}

// fvfs_register builds the shim over the default VFS and registers it.
static void
fvfs_register(void)
{
	int rc;

	if ((fvfs_real = sqlite3_vfs_find(NULL)) == NULL) {
		log_err("fault: no default SQLite VFS to wrap");
		return;
	}
	// Version 2 is enough: the system-call overrides of version 3 are
	// for SQLite's own tests and stay with the real VFS.
	fvfs = (sqlite3_vfs) {
		.iVersion          = 2,
		.szOsFile          = (int) FVFS_HDR + fvfs_real->szOsFile,
		.mxPathname        = fvfs_real->mxPathname,
		.zName             = FVFS_NAME,
		.xOpen             = fvfs_open,
		.xDelete           = fvfs_delete,
		.xAccess           = fvfs_access,
		.xFullPathname     = fvfs_full_pathname,
		.xDlOpen           = fvfs_dlopen,
		.xDlError          = fvfs_dlerror,
		.xDlSym            = fvfs_dlsym,
		.xDlClose          = fvfs_dlclose,
		.xRandomness       = fvfs_randomness,
		.xSleep            = fvfs_sleep,
		.xCurrentTime      = fvfs_current_time,
		.xGetLastError     = fvfs_last_error,
		.xCurrentTimeInt64 = fvfs_current_time64,
	};
	if ((rc = sqlite3_vfs_register(&fvfs, 0)) != SQLITE_OK) {
		log_err("fault: cannot register the %s VFS: %s", FVFS_NAME,
		    sqlite3_errstr(rc));
		return;
	}
	fvfs_ok = true;
}

const char *
tb_fault_vfs(void)
{
	(void) pthread_once(&fvfs_once, fvfs_register);
	return (fvfs_ok ? FVFS_NAME : NULL);
}
