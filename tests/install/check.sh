#!/usr/bin/env bash
# check.sh BUILD_DIR SOURCE_DIR: install BUILD_DIR into a temporary prefix
# and build against what was installed: a small C program with pkg-config
# and with CMake (find_package(taskbroker)), each then run; and the
# plugin example with the installed handler header. The prefix is a
# fresh directory, removed at the end.
set -euo pipefail
build=$1
src=$2
root=$(mktemp -d "${TMPDIR:-/tmp}/tbinst.XXXXXX")
trap 'rm -rf "$root"' EXIT
prefix=$root/prefix
cc=${CC:-cc}

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(find "$prefix" -name 'libtaskbroker.so*' -type f -printf '%h\n' | head -n1)
[ -n "$libdir" ] || { echo "install: no libtaskbroker.so under $prefix" >&2; exit 1; }
for f in include/taskbroker.h include/taskbroker/defs.h \
	include/taskbroker/handler.h bin/taskbrokerd bin/taskbroker; do
	[ -e "$prefix/$f" ] || { echo "install: $f is missing" >&2; exit 1; }
done

# pkg-config
export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --modversion taskbroker)" = "$(sed -n 's/^project(taskbroker VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")" ] ||
	{ echo "pkg-config: wrong version" >&2; exit 1; }
# shellcheck disable=SC2046
$cc -o "$root/consumer-pc" "$src/tests/install/consumer.c" \
	$(pkg-config --cflags --libs taskbroker)
[ "$(LD_LIBRARY_PATH=$libdir "$root/consumer-pc")" = timed_out ]

# CMake
mkdir -p "$root/cm"
cp "$src/tests/install/consumer.c" "$root/cm/"
cp "$src/tests/install/CMakeLists.txt.in" "$root/cm/CMakeLists.txt"
cmake -S "$root/cm" -B "$root/cm/build" -DCMAKE_PREFIX_PATH="$prefix" \
	>/dev/null
cmake --build "$root/cm/build" >/dev/null
[ "$(LD_LIBRARY_PATH=$libdir "$root/cm/build/consumer")" = timed_out ]

# The plugin example against the installed handler header only.
# shellcheck disable=SC2046
$cc -shared -fPIC -o "$root/hello.so" "$src/examples/plugin/hello.c" \
	-I"$prefix/include" $(pkg-config --cflags libuv msgpack-c 2>/dev/null ||
	pkg-config --cflags libuv msgpack)
[ -s "$root/hello.so" ]
echo "install: pkg-config, CMake and plugin builds against $prefix passed"
