#!/usr/bin/env bash
# mkexpected.sh -- build the firmware programs for the HOST and record what
# they print: expected/<prog>.out (stdout) and expected/<prog>.status (exit
# status, only if it is not 0).  The host build is the oracle: the programs
# use fixed-width types and no undefined behaviour, so a correct CR16C
# prints exactly the same.
#
#   ./mkexpected.sh prog...           (re)write expected/ (what `make expected` does)
#   ./mkexpected.sh --check prog...   build (e.g. with sanitizers), compare, write nothing
#
# Per program: stdin comes from input/<prog>.in (else /dev/null), the
# arguments after argv[0] from expected/<prog>.args (one per line), and the
# working directory is a fresh empty directory (fileio creates files there;
# aemu runs it with --fs-root pointing at such a directory).
set -euo pipefail
cd "$(dirname "$0")"
HOSTCC=${HOSTCC:-gcc}
HOST_CFLAGS=${HOST_CFLAGS:-"-std=c11 -Wall -Wextra -Wno-unused-function -O2 -ffp-contract=off"}
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
[ $# -gt 0 ] || { echo "usage: $0 [--check] prog..." >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p expected
fail=0
for prog in "$@"; do
    # shellcheck disable=SC2086
    $HOSTCC $HOST_CFLAGS -o "$tmp/$prog" "$prog.c" -lm
    args=()
    if [ -f "expected/$prog.args" ]; then
        mapfile -t args < "expected/$prog.args"
    fi
    stdin=/dev/null
    [ -f "input/$prog.in" ] && stdin="$PWD/input/$prog.in"
    mkdir "$tmp/cwd-$prog"
    status=0
    (cd "$tmp/cwd-$prog" && "$tmp/$prog" "${args[@]}" < "$stdin" > "$tmp/$prog.out") || status=$?
    if [ $check = 1 ]; then
        want=0
        [ -f "expected/$prog.status" ] && want=$(cat "expected/$prog.status")
        if cmp -s "$tmp/$prog.out" "expected/$prog.out" && [ "$status" = "$want" ]; then
            echo "ok    $prog"
        else
            echo "DIFF  $prog (status $status, expected $want)"; fail=1
        fi
    else
        cp "$tmp/$prog.out" "expected/$prog.out"
        if [ "$status" != 0 ]; then
            echo "$status" > "expected/$prog.status"
        else
            rm -f "expected/$prog.status"
        fi
        printf '%-10s %6d lines  status %d\n' "$prog" "$(wc -l < "expected/$prog.out")" "$status"
    fi
done
exit $fail
