// tbp_nng.c: the one map from nng error codes to tb_err, for the broker
// and the client (see tbp_nng_err in tbp.h). proto/ does no I/O: it needs
// <nng/nng.h> only for the NNG_E* constants.

#include <nng/nng.h>

#include "tbp.h"

// tbp_nng_map has one row per nng code that is not TB_ESYSTEM in every
// ctx, and one column per tbp_nng_ctx. The table in tbp.h says the same;
// keep the two alike.
static const struct {
	int nng;
	int tb[TBP_NNG_CTX_COUNT];
} tbp_nng_map[] = {
	// { nng code, { BROKER, CLIENT, DIAL } }
	{ NNG_ENOMEM, { TB_ENOMEM, TB_ENOMEM, TB_ENOMEM } },
	{ NNG_ETIMEDOUT, { TB_ETIMEDOUT, TB_ETIMEDOUT, TB_ETIMEDOUT } },
	{ NNG_ECLOSED, { TB_ECLOSED, TB_ECLOSED, TB_ECLOSED } },
	{ NNG_EINVAL, { TB_EINVAL, TB_EINVAL, TB_EINVAL } },
	{ NNG_ENOTSUP, { TB_EINVAL, TB_ESYSTEM, TB_EINVAL } },
	{ NNG_EADDRINVAL, { TB_EINVAL, TB_EUNREACHABLE, TB_EUNREACHABLE } },
	{ NNG_EADDRINUSE, { TB_EBUSY, TB_ESYSTEM, TB_ESYSTEM } },
	{ NNG_EPROTO, { TB_ESYSTEM, TB_EPROTO, TB_EPROTO } },
	{ NNG_ECONNREFUSED, { TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE } },
	{ NNG_ECONNRESET, { TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE } },
	{ NNG_ECONNSHUT, { TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE } },
	{ NNG_ECONNABORTED, { TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE } },
	{ NNG_ENOENT, { TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE } },
	{ NNG_EUNREACHABLE, { TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE } },
	{ NNG_EPEERAUTH, { TB_ESYSTEM, TB_ETLS, TB_ETLS } },
	{ NNG_ECRYPTO, { TB_ESYSTEM, TB_ETLS, TB_ETLS } },
	{ NNG_EPERM, { TB_ESYSTEM, TB_EUNREACHABLE, TB_EUNREACHABLE } },
	{ NNG_EAGAIN, { TB_ESYSTEM, TB_ESYSTEM, TB_EUNREACHABLE } },
};

int
tbp_nng_err(int rv, tbp_nng_ctx ctx)
{
	if (rv == 0) {
		return (TB_OK);
	}
	if ((unsigned) ctx >= TBP_NNG_CTX_COUNT) {
		return (TB_EINTERNAL); // the caller's bug
	}
	for (size_t i = 0; i < sizeof(tbp_nng_map) / sizeof(tbp_nng_map[0]);
	     i++) {
		if (tbp_nng_map[i].nng == rv) {
			return (tbp_nng_map[i].tb[ctx]);
		}
	}
	return (TB_ESYSTEM);
}
