#!/bin/bash
# Storage: a tree of about 2000 files copied onto a volume and off it again with tar and cp -r, checksums and listing unchanged.
#
# The tree (random sizes from 0 to 300 KiB, nested directories, a symbolic
# link, an empty directory) goes in with `tar -C /data/t -xf` and `cp -r`,
# is listed on the volume with find, comes out with `tar -C /data/t -cf` and
# `cp -r`; every copy's manifest (path, type, size, sha256 or link target)
# must equal the source's.  Then e2fsck -fn is clean.  Each step is one
# `libretto run --volume` (see lib_vol.sh for ST_STORAGE).
# Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
lt_name=test_vol_tree
here=$(dirname "$0")
. "$here/../integration/lib.sh"
. "$here/lib_vol.sh"

sv_init
lt_need tar cp find sha256sum python3

# The source tree: deterministic from a seed, so a failure can be replayed.
src=$LT_TMP/src
python3 - "$src" "${ST_TREE_FILES:-2000}" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(8)
dirs = [""]
for i in range(120):
    parent = rnd.choice(dirs)
    if parent.count("/") >= 4:
        parent = ""
    d = os.path.join(parent, "d%03d" % i)
    dirs.append(d)
for d in dirs:
    os.makedirs(os.path.join(root, d), exist_ok=True)
for i in range(n):
    d = rnd.choice(dirs)
    r = rnd.random()
    size = 0 if r < 0.05 else rnd.randint(1, 4096) if r < 0.8 else rnd.randint(4097, 300 * 1024)
    with open(os.path.join(root, d, "f%04d.bin" % i), "wb") as f:
        f.write(rnd.randbytes(size))
os.makedirs(os.path.join(root, "empty_dir"))
os.symlink("d000/../f-target", os.path.join(root, "link"))
with open(os.path.join(root, "f-target"), "w") as f:
    f.write("target\n")
os.symlink("missing-target", os.path.join(root, "dangling"))
PY
# manifest DIR: one line per entry, sorted: path type size sha256|target.
manifest() {
	(cd "$1" && find . -mindepth 1 -printf '%y %p %s %l\n' | LC_ALL=C sort | while read -r t p s l; do
		case $t in
		f) echo "f $p $s $(sha256sum <"$p" | cut -c1-64)" ;;
		l) echo "l $p $l" ;;
		d) echo "d $p" ;;
		*) echo "$t $p" ;;
		esac
	done)
}
manifest "$src" >"$LT_TMP/src.manifest"
nfiles=$(grep -c '^f ' "$LT_TMP/src.manifest")
lt_log "source tree: $nfiles files, $(grep -c '^d ' "$LT_TMP/src.manifest") dirs, $(du -sh "$src" | cut -f1)"
tar -C "$src" -cf "$LT_TMP/in.tar" .

sv_image "$LT_TMP/vol.img"
D=$ST_DATA
sv_must mkdirs mkdir -p "$D/t" "$D/c"
sv_must tar_in tar -C "$D/t" -xf "$LT_TMP/in.tar"
lt_log "tar -C $D/t -xf: done"
sv_must cp_in cp -r "$src" "$D/c/src"
lt_log "cp -r into $D/c: done"

# The listing seen on the volume itself (find: getdents, fstatat, readlink).
sv_must find_vol find "$D/t" -mindepth 1 -printf '%y %P %s %l\n'
LC_ALL=C sort "$LT_TMP/find_vol.out" >"$LT_TMP/vol.list"
(cd "$src" && find . -mindepth 1 -printf '%y %P %s %l\n') | LC_ALL=C sort |
	sed 's/^d \(.*\) [0-9]* $/d \1/' >"$LT_TMP/src.list"
sed -i 's/^d \(.*\) [0-9]* $/d \1/' "$LT_TMP/vol.list"
if ! diff -u "$LT_TMP/src.list" "$LT_TMP/vol.list" >"$LT_TMP/list.diff"; then
	head -n 40 "$LT_TMP/list.diff" >&2
	lt_fail "find on the volume lists the tree differently (types, names, sizes, link targets)"
fi
lt_log "find on the volume: $(wc -l <"$LT_TMP/vol.list") entries as in the source"

rm -rf "$LT_TMP/out_tar" "$LT_TMP/out_cp"
mkdir -p "$LT_TMP/out_tar"
sv_must tar_out tar -C "$D/t" -cf "$LT_TMP/out.tar" .
sv_must cp_out cp -r "$D/c/src" "$LT_TMP/out_cp"
tar -C "$LT_TMP/out_tar" -xf "$LT_TMP/out.tar" || lt_fail "the tar made on the volume does not extract"
for copy in out_tar out_cp; do
	manifest "$LT_TMP/$copy" >"$LT_TMP/$copy.manifest"
	if ! diff -u "$LT_TMP/src.manifest" "$LT_TMP/$copy.manifest" >"$LT_TMP/$copy.diff"; then
		head -n 40 "$LT_TMP/$copy.diff" >&2
		lt_fail "$copy: the tree that came back differs from the source"
	fi
done
lt_log "tar -cf and cp -r out of the volume: $nfiles files, sha256 and listing equal"

# Remove it all on the volume, then the file system must be clean and empty.
sv_must rm_all rm -rf "$D/t" "$D/c"
sv_must ls_after ls -A "$D"
grep -qvE '^lost\+found$' "$LT_TMP/ls_after.out" && lt_fail "left on the volume after rm -rf: $(cat "$LT_TMP/ls_after.out")"
sv_fsck_clean "after the tree went in, out and away"
lt_log "PASS"
exit 0
