// compat/handler_http.h: the old name of handlers/http.h, kept for
// broker/loop.c only.
//
// loop.c is being rewritten elsewhere and keeps its old #include lines
// until then; tbcore has broker/compat on its private include path so
// they still resolve. Nothing else may include this. Once loop.c
// includes "handlers/http.h", delete broker/compat and its line in
// broker/CMakeLists.txt.

#ifndef COMPAT_HANDLER_HTTP_H
#define COMPAT_HANDLER_HTTP_H

#include "handlers/http.h"

#endif // COMPAT_HANDLER_HTTP_H
