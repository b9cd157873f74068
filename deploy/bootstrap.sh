#!/usr/bin/env bash
# bootstrap.sh: install what taskbroker needs on Debian 12, build it, and
# either start the broker or run the whole test suite. Safe to run again:
# packages already present are not fetched, builds are incremental.
#
#   deploy/bootstrap.sh start   build, then run taskbrokerd in the foreground
#                               on its defaults (./data, ./run)
#   deploy/bootstrap.sh test    build, run every test, then the Python
#                               package's tests (python/tests, in a virtual
#                               environment build/venv), then build with
#                               AddressSanitizer + UndefinedBehaviorSanitizer
#                               and run every C test again, then build with
#                               ThreadSanitizer and run the integration
#                               suite, then run the libFuzzer decoder
#                               targets for FUZZ_SECONDS each (default 30)
#   deploy/bootstrap.sh python-test
#                               only the Python part of 'test': build the
#                               library and the broker, make build/venv,
#                               run python/tests
set -euo pipefail

mode=${1:-}
case "$mode" in
start | test | python-test) ;;
*)
	echo "usage: $0 start|test|python-test" >&2
	exit 2
	;;
esac

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# The Debian 12 packages we build against (see README: Dependencies).
pkgs=(gcc make cmake pkg-config libnng-dev libmsgpack-dev libsqlite3-dev
	libuv1-dev libjansson-dev libinih-dev uthash-dev libcmocka-dev
	libsystemd-dev openssl)
# The test run also checks the C sources' format, and fuzzes with clang's
# libFuzzer (its runtime is in libclang-rt-14-dev, which clang does not
# pull in).
[ "$mode" = test ] && pkgs+=(clang-format clang libclang-rt-14-dev)

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

werror=OFF
[ "${CI:-}" = true ] && werror=ON

# The integration tests' brokers live in directories below TBH_TMPDIR: a
# fresh one per run, so that another run on the machine (or its clean-up)
# cannot touch this one's. The Python tests' brokers too (TMPDIR).
# Searchable by all: test_access connects as another user.
TBH_TMPDIR=$(mktemp -d /tmp/tbt.XXXXXX)
chmod 0755 "$TBH_TMPDIR"
export TBH_TMPDIR
trap 'rm -rf "$TBH_TMPDIR"' EXIT

# python_tests: the Python package (python/) in a virtual environment,
# build/venv, made with the python3 on PATH (a CPython with pip and venv;
# Debian's python3-venv is installed only when that python3 is Debian's and
# lacks venv). The package and its pinned test dependencies (pyproject.toml)
# are installed with pip, again only when pyproject.toml changed. The tests
# start real brokers from build/ and load build/'s libtaskbroker.so. They
# run in the plain build only: under ASan the sanitizer runtime would have
# to be preloaded into python itself.
python_tests() {
	local py=${PYTHON:-python3} venv=$top/build/venv stamp
	if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
		if [ "$(command -v "$py")" = /usr/bin/python3 ]; then
			local sudo=""
			[ "$(id -u)" -eq 0 ] || sudo="sudo"
			$sudo apt-get update -qq
			DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
				python3-venv
		else
			echo "python: $py has no venv/ensurepip module" >&2
			exit 1
		fi
	fi
	[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
	stamp=$(sha256sum python/pyproject.toml | cut -d' ' -f1)
	if [ "$(cat "$venv/.tb-installed" 2>/dev/null)" != "$stamp" ]; then
		"$venv/bin/python" -m pip install -q --disable-pip-version-check \
			-e "./python[test]"
		echo "$stamp" >"$venv/.tb-installed"
	fi
	TMPDIR=$TBH_TMPDIR TASKBROKER_LIB=$top/build/client/libtaskbroker.so \
		TB_BROKER_BIN=$top/build/broker/taskbrokerd \
		"$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
}

if [ "$mode" = python-test ]; then
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DTB_WERROR=$werror -DTB_TESTS=ON -DTB_BENCH=ON >/dev/null
	cmake --build build -j "$jobs" --target taskbroker taskbrokerd
	python_tests
	exit 0
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

build build -DTB_WERROR=$werror -DTB_TESTS=ON -DTB_BENCH=ON
(cd build && ctest --output-on-failure -j "$jobs")

# The Python package's tests, against this build (plain build only).
python_tests

# The same C suite under ASan + UBSan: any report fails the run (the
# Python tests are not run here, see python_tests).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build build-asan -DTB_WERROR=$werror -DTB_TESTS=ON -DTB_BENCH=OFF \
	-DCMAKE_BUILD_TYPE=Debug -DTB_SANITIZER=address,undefined
(cd build-asan && ctest --output-on-failure -j "$jobs")
unset ASAN_OPTIONS UBSAN_OPTIONS

# The integration suite under ThreadSanitizer: the broker, the client
# library and the CLI as the tests run them. Every process that sees a
# race writes its report to tsan-logs/ and stops (halt_on_error); any
# report fails the run, also from a process whose exit status no test
# looks at. tests/tsan.supp silences races inside nng and SQLite only
# (each entry says why).
tsan_logs=$top/build-tsan/tsan-logs
rm -rf "$tsan_logs"
mkdir -p "$tsan_logs"
build build-tsan -DTB_WERROR=$werror -DTB_TESTS=ON -DTB_BENCH=OFF \
	-DTB_SANITIZER=thread
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$top/tests/tsan.supp log_path=$tsan_logs/tsan"
# test_faults' workload countdowns fail every 8th hit only here (the runs
# above fail every hit): a broker under TSan starts in about a second.
export TB_COUNTDOWN_STEP=8
tsan_rc=0
(cd build-tsan && ctest -L integration --output-on-failure -j "$jobs") ||
	tsan_rc=1
unset TSAN_OPTIONS TB_COUNTDOWN_STEP
if compgen -G "$tsan_logs/tsan.*" >/dev/null; then
	cat "$tsan_logs"/tsan.*
	echo "tsan: races reported (above; also in $tsan_logs)" >&2
	exit 1
fi
[ "$tsan_rc" -eq 0 ] || exit 1
echo "tsan: integration suite passed, no race reported"

# libFuzzer: each decoder target for a fixed time, on top of the corpus
# replay every build ran above. A crash leaves build-fuzz/crash-*: copy it
# into the target's corpus directory, fix, and it is replayed from then on.
fuzz_s=${FUZZ_SECONDS:-30}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DTB_WERROR=$werror -DTB_FUZZ=ON -DTB_TESTS=ON -DTB_BENCH=OFF >/dev/null
cmake --build build-fuzz -j "$jobs" --target fuzz_tbp_decode fuzz_tbp_struct
for t in decode:corpus struct:corpus_struct; do
	name=fuzz_tbp_${t%%:*}
	new=build-fuzz/fuzz-new/$name
	mkdir -p "$new"
	echo "fuzz: $name for ${fuzz_s} s"
	"build-fuzz/tests/fuzz/$name" -max_total_time="$fuzz_s" -max_len=4096 \
		-timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
		-artifact_prefix=build-fuzz/ "$new" "tests/fuzz/${t#*:}" \
		2> "build-fuzz/$name.log" || {
		tail -n 40 "build-fuzz/$name.log"
		echo "fuzz: $name failed (log: build-fuzz/$name.log)" >&2
		exit 1
	}
	grep -E '^stat::number_of_executed_units' "build-fuzz/$name.log"
done
