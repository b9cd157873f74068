#!/usr/bin/env bash
# check_unit.sh SOURCE_DIR BROKER_BIN: the systemd unit in deploy/ scores
# 2.0 or better on `systemd-analyze security --offline=yes`, and passes
# `systemd-analyze verify` with its ExecStart pointed at BROKER_BIN; the
# sysusers file parses. Skipped (exit 77) where systemd-analyze is missing.
set -euo pipefail
src=$1
bin=$2
command -v systemd-analyze >/dev/null || { echo "no systemd-analyze"; exit 77; }
unit=$src/deploy/taskbrokerd.service
dir=$(mktemp -d "${TMPDIR:-/tmp}/tbunit.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# --threshold is in tenths: 20 is an exposure of 2.0.
if ! systemd-analyze security --offline=yes --threshold=20 "$unit" \
	>"$dir/score" 2>&1; then
	cat "$dir/score" >&2
	echo "unit: exposure above 2.0" >&2
	exit 1
fi
tail -n 1 "$dir/score"
sed "s|^ExecStart=/usr/local/bin/taskbrokerd|ExecStart=$bin|" "$unit" \
	>"$dir/taskbrokerd.service"
grep -q "^ExecStart=$bin" "$dir/taskbrokerd.service"
systemd-analyze verify "$dir/taskbrokerd.service"
if command -v systemd-sysusers >/dev/null; then
	if ! systemd-sysusers --dry-run --root="$dir" \
		"$src/deploy/taskbroker.sysusers" >"$dir/sysusers" 2>&1; then
		cat "$dir/sysusers" >&2
		echo "unit: the sysusers file does not parse" >&2
		exit 1
	fi
fi
echo "unit: verified"
