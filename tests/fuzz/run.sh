#!/bin/bash
# Build a libFuzzer harness with clang (ASan + UBSan) and run it for a bounded time.
# Usage: run.sh HARNESS SECONDS   (env LIBRETTO_SRC, LIBRETTO_BUILD as set by meson)
set -euo pipefail
name=$1
secs=${2:-15}
src=${LIBRETTO_SRC:?}
out=${LIBRETTO_BUILD:?}/tests/fuzz
command -v clang >/dev/null || { echo "clang not installed"; exit 77; }
mkdir -p "$out/corpus-$name"
case $name in
kv) files="$src/tests/fuzz/fuzz_kv.c $src/src/common/kv.c" ;;
classify) files="$src/tests/fuzz/fuzz_classify.c $src/src/netd/classify.c $src/src/netd/frag.c" ;;
validate) files="$src/tests/fuzz/fuzz_validate.c $src/src/netd/validate.c $src/src/netd/classify.c $src/src/netd/frag.c" ;;
fsdreq) files="$src/tests/fuzz/fuzz_fsdreq.c $src/src/fsd/req.c" ;;
*) echo "unknown harness $name" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
clang -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -I"$src/include" -I"$src/src" \
	$files -o "$out/fuzz_$name"
cp -n "$src"/tests/fuzz/seeds/"$name"/* "$out/corpus-$name/" 2>/dev/null || true
"$out/fuzz_$name" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
	-artifact_prefix="$out/crash-$name-" "$out/corpus-$name" 2>&1 | tail -15
