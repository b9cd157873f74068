#!/usr/bin/env bash
# bootstrap.sh: install what taskbroker needs on Debian 12, build it, and
# either start the broker or run the whole test suite. Safe to run again:
# packages already present are not fetched, builds are incremental.
#
#   deploy/bootstrap.sh start   build, then run taskbrokerd in the foreground
#                               on its defaults (./data, ./run)
#   deploy/bootstrap.sh test    build, run every test, then build with
#                               AddressSanitizer + UndefinedBehaviorSanitizer
#                               and run every test again
set -euo pipefail

mode=${1:-}
case "$mode" in
start | test) ;;
*)
	echo "usage: $0 start|test" >&2
	exit 2
	;;
esac

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# The Debian 12 packages we build against (see README: Dependencies).
pkgs=(gcc make cmake pkg-config libnng-dev libmsgpack-dev libsqlite3-dev
	libuv1-dev libjansson-dev libinih-dev uthash-dev libcmocka-dev
	openssl)
# The test run also checks the C sources' format.
[ "$mode" = test ] && pkgs+=(clang-format)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "installing: ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

jobs=$(nproc 2>/dev/null || echo 2)

build() { # build DIR [cmake args...]
	local dir=$1
	shift
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
	cmake --build "$dir" -j "$jobs"
}

if [ "$mode" = start ]; then
	build build -DTB_TESTS=OFF -DTB_BENCH=OFF
	echo "starting taskbrokerd (Ctrl-C stops it gracefully)"
	exec ./build/broker/taskbrokerd
fi

# The C sources must be as clang-format (.clang-format) writes them.
mapfile -t csrc < <(git ls-files '*.c' '*.h' 2>/dev/null ||
	find broker client proto include tests bench examples \
		-name '*.[ch]' -not -path '*/build*')
if ! clang-format --dry-run --Werror "${csrc[@]}"; then
	echo "format: run clang-format -i on the files above" >&2
	exit 1
fi
echo "format: ${#csrc[@]} C files as clang-format writes them"

werror=OFF
[ "${CI:-}" = true ] && werror=ON
build build -DTB_WERROR=$werror -DTB_TESTS=ON -DTB_BENCH=ON
(cd build && ctest --output-on-failure -j "$jobs")

# The same suite under ASan + UBSan: any report fails the run.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build build-asan -DTB_WERROR=$werror -DTB_TESTS=ON -DTB_BENCH=OFF \
	-DCMAKE_BUILD_TYPE=Debug -DTB_SANITIZER=address,undefined
(cd build-asan && ctest --output-on-failure -j "$jobs")
