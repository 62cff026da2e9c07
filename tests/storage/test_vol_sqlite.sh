#!/bin/bash
# Storage: sqlite3 running a transaction workload on /data/t.db (rollback journal, then WAL), integrity_check ok and row counts right, again after reopening.
#
# Workload: 4000 inserts in 8 transactions, a transaction rolled back,
# updates and deletes, an index; the expected counts and sums are computed
# here independently.  Each sqlite3 run is one `libretto run --volume`, so
# the reopen starts from what the volume holds.  A second database uses
# journal_mode=WAL with locking_mode=EXCLUSIVE (sqlite's WAL without the
# shared-memory index).  Then e2fsck -fn is clean.
# Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
lt_name=test_vol_sqlite
here=$(dirname "$0")
. "$here/../integration/lib.sh"
. "$here/lib_vol.sh"

sv_init
lt_need sqlite3
sv_image "$LT_TMP/vol.img"
D=$ST_DATA

# The workload: rows 1..4000 with v = i*3 and a 200-byte text; rows
# 1001..1500 inserted again in a transaction that is rolled back; even ids
# get v += 1; ids divisible by 5 deleted.
workload() {
	local journal=$1
	echo "PRAGMA journal_mode=$journal;"
	[ "$journal" = WAL ] && echo "PRAGMA locking_mode=EXCLUSIVE;"
	echo "PRAGMA synchronous=FULL;"
	echo "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, s TEXT);"
	for tx in 0 1 2 3 4 5 6 7; do
		echo "BEGIN;"
		for ((i = tx * 500 + 1; i <= tx * 500 + 500; i++)); do
			echo "INSERT INTO t VALUES($i, $((i * 3)), printf('%0200d', $i));"
		done
		echo "COMMIT;"
	done
	echo "BEGIN;"
	echo "DELETE FROM t WHERE id > 1000 AND id <= 1500;"
	echo "INSERT INTO t VALUES(999999, 1, 'rolled back');"
	echo "ROLLBACK;"
	echo "BEGIN; UPDATE t SET v = v + 1 WHERE id % 2 = 0; COMMIT;"
	echo "BEGIN; DELETE FROM t WHERE id % 5 = 0; COMMIT;"
	echo "CREATE INDEX t_v ON t(v);"
	echo "PRAGMA integrity_check;"
	echo "SELECT count(*), sum(v), sum(length(s)) FROM t;"
}
# The expected count and sums, computed without sqlite.
expect=$(python3 -c '
ids = [i for i in range(1, 4001) if i % 5]
print("%d|%d|%d" % (len(ids), sum(i * 3 + (1 if i % 2 == 0 else 0) for i in ids), 200 * len(ids)))')
check_sql="PRAGMA integrity_check; SELECT count(*), sum(v), sum(length(s)) FROM t; SELECT count(*) FROM t INDEXED BY t_v WHERE v > 6000;"
expect_idx=$(python3 -c '
print(sum(1 for i in range(1, 4001) if i % 5 and i * 3 + (1 if i % 2 == 0 else 0) > 6000))')

for journal in DELETE WAL; do
	db=$D/t-$journal.db
	workload "$journal" >"$LT_TMP/work.sql"
	sv_must "sqlite_$journal" sqlite3 -bail "$db" ".read $LT_TMP/work.sql"
	got=$(grep -vE '^(delete|wal|exclusive)$' "$LT_TMP/sqlite_$journal.out" | tr '\n' ' ')
	[ "$got" = "ok $expect " ] || lt_fail "$journal: the workload printed '$got', expected 'ok $expect'"
	lt_log "journal_mode=$journal: 4000 inserts in 8 transactions, a rollback, updates, deletes: integrity ok, $expect"
	pragma=""
	[ "$journal" = WAL ] && pragma="PRAGMA locking_mode=EXCLUSIVE;"
	sv_must "reopen_$journal" sqlite3 -bail "$db" "$pragma $check_sql"
	got=$(grep -v '^exclusive$' "$LT_TMP/reopen_$journal.out" | tr '\n' ' ')
	[ "$got" = "ok $expect $expect_idx " ] ||
		lt_fail "$journal: after reopening: '$got', expected 'ok $expect $expect_idx'"
	lt_log "journal_mode=$journal: reopened in a new process: integrity ok, counts, sums and index right"
done
sv_must ls_db ls "$D"
lt_log "on the volume: $(tr '\n' ' ' <"$LT_TMP/ls_db.out")"
sv_fsck_clean "after the sqlite workloads"

# A new run after the file-system check gives the same answers.
sv_must final sqlite3 -bail "$D/t-DELETE.db" "$check_sql"
[ "$(tr '\n' ' ' <"$LT_TMP/final.out")" = "ok $expect $expect_idx " ] || lt_fail "after e2fsck the database answers '$(cat "$LT_TMP/final.out")'"
sv_fsck_clean "at the end"
lt_log "PASS"
exit 0
