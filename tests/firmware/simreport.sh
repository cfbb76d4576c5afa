#!/usr/bin/env bash
# simreport.sh -- run firmware ELFs on the reference simulator
# (cr16-elf-run-trace with CR16_SIM_COUNT=1) and compare with expected/.
# Prints one line per ELF: result, instructions executed, exit status.
#
#   CR16_PREFIX=/opt/cr16-elf ./simreport.sh *.elf
#
# The simulator cannot pass arguments (args gets argc = 1), and it has
# known defects (see README.md), so DIFF lines are expected for some.
set -uo pipefail
cd "$(dirname "$0")"
CR16_PREFIX=${CR16_PREFIX:-/opt/cr16-elf}
SIM="$CR16_PREFIX/bin/cr16-elf-run-trace"
LIMIT=${SIM_LIMIT:-30000000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-24s %-6s %12s %s\n' ELF result insns status
for elf in "$@"; do
    base=${elf%.elf}
    prog=${base%-O0}; prog=${prog%-O2}; prog=${prog%-Os}; prog=${prog%-msim}
    stdin=/dev/null
    [ -f "input/$prog.in" ] && stdin="$PWD/input/$prog.in"
    want=0
    [ -f "expected/$prog.status" ] && want=$(cat "expected/$prog.status")
    rm -rf "$tmp/cwd"; mkdir "$tmp/cwd"
    status=0
    (cd "$tmp/cwd" && CR16_SIM_COUNT=1 timeout 60 "$SIM" --watch-cycles-breakpoint "$LIMIT" \
        "$OLDPWD/$elf" < "$stdin" > "$tmp/out" 2> "$tmp/err") || status=$?
    insns=$(sed -n 's/^cr16-sim: \([0-9]*\) instructions executed/\1/p' "$tmp/err" | tail -1)
    if cmp -s "$tmp/out" "expected/$prog.out" && [ "$status" = "$want" ]; then
        result=ok
    else
        result=DIFF
    fi
    printf '%-24s %-6s %12s %s\n' "$elf" "$result" "${insns:-?}" "$status"
done
