#!/bin/bash
# libFuzzer targets of the cursor, channel and token parsers, ~10 s each from the committed
# seeds (tests/fuzz/corpus/<target>/). New inputs go to a scratch dir, not the repo.
source "$(dirname "$0")/../lib/tap.sh"
ROOT=${PGCAST_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT" || exit 1
work=$(mktemp -d "${PGCAST_TEST_WORK:-/tmp}/fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
secs=${PGCAST_FUZZ_SECONDS:-6}

if ! make --no-print-directory fuzz >"$work/build.log" 2>&1; then
    not_ok "make fuzz builds the targets"
    sed 's/^/# /' "$work/build.log" | tail -30
    tap_done
fi
ok "make fuzz builds the targets"

for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    mkdir -p "$work/$name"
    if build/fuzz/"$name" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$work/$name-" "$work/$name" "tests/fuzz/corpus/$name" \
        >"$work/$name.log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name.log")
        ok "$name: no crash in ${secs}s (${runs:-?} runs)"
    else
        not_ok "$name found a crash"
        grep -v '^#[0-9]' "$work/$name.log" | tail -40 | sed 's/^/# /'
        for a in "$work/$name"-*; do
            [ -f "$a" ] && echo "# input: $(od -An -c "$a" | head -5 | tr -s ' ')"
        done
    fi
done
tap_done
