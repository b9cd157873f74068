// compat/plugins.h: the old name of handlers/plugins.h, kept for
// broker/loop.c only.
//
// loop.c is being rewritten elsewhere and keeps its old #include lines
// until then; tbcore has broker/compat on its private include path so
// they still resolve. Nothing else may include this. Once loop.c
// includes "handlers/plugins.h", delete broker/compat and its line in
// broker/CMakeLists.txt.

#ifndef COMPAT_PLUGINS_H
#define COMPAT_PLUGINS_H

#include "handlers/plugins.h"

#endif // COMPAT_PLUGINS_H
