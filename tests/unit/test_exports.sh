#!/bin/bash
# Unit test: libretto.so exports exactly the names listed in ipx.def.
# usage: test_exports.sh LIBRETTO_SO IPX_DEF   (exit 0 pass, 1 fail, 77 skip)
set -uo pipefail
so=${1:?libretto.so}
def=${2:?ipx.def}
command -v nm >/dev/null || { echo "nm not found"; exit 77; }
[ -f "$so" ] || { echo "$so not built"; exit 1; }

want=$(sed -n 's/^IPX([^,]*, *\([A-Za-z0-9_]*\) *,.*/\1/p' "$def" | sort -u)
# Defined dynamic symbols; undefined ones (U, w) are what we import.
have=$(nm -D --defined-only "$so" | awk '{ print $NF }' | sed 's/@.*//' | sort -u)

if [ -z "$want" ]; then
	echo "no IPX() entries found in $def"
	exit 1
fi
if [ "$want" != "$have" ]; then
	echo "exported symbols differ from ipx.def (< ipx.def only, > exported only):"
	diff <(echo "$want") <(echo "$have") | grep '^[<>]'
	exit 1
fi
echo "exports: $(echo "$want" | wc -l) names, as ipx.def lists"
