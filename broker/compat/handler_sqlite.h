// compat/handler_sqlite.h: the old name of handlers/sqlite.h, kept for
// broker/loop.c only.
//
// loop.c is being rewritten elsewhere and keeps its old #include lines
// until then; tbcore has broker/compat on its private include path so
// they still resolve. Nothing else may include this. Once loop.c
// includes "handlers/sqlite.h", delete broker/compat and its line in
// broker/CMakeLists.txt.

#ifndef COMPAT_HANDLER_SQLITE_H
#define COMPAT_HANDLER_SQLITE_H

#include "handlers/sqlite.h"

#endif // COMPAT_HANDLER_SQLITE_H
