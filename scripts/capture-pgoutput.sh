#!/usr/bin/env bash
# Capture real pgoutput messages for the decoder's unit tests and fuzz seed corpus.
#
#   scripts/capture-pgoutput.sh
#
# Starts throwaway clusters (scripts/clusters.sh), runs a workload on the source that makes
# pgoutput emit every message type it has in PostgreSQL 15, and reads them back through the
# SQL interface (pg_logical_slot_get_binary_changes: one row = one pgoutput message, exactly
# the payload of one XLogData frame). Output:
#
#   tests/data/pgoutput/<scenario>.hex    one message per line: "lsn xid hex-bytes"
#   tests/fuzz/corpus/pgoutput/<scenario>-NNN   the same messages, raw, one file each
#   tests/fuzz/corpus/pgoutput/<scenario>-sequence   all of them as "I16 length, message"
#                                                    frames (tests/fuzz/fuzz_pgoutput.c)
#
# tests/unit/test_pgoutput.c asserts on the values this workload writes; change both together.
# Three slots see the same WAL with different options, because one option set cannot produce
# everything: "plain" (proto 2, text, streaming), "binary" (binary values) and "twophase"
# (a two-phase slot read with proto 3). Each scenario reads only its slot and fast-forwards
# the others past WAL they are not meant to report.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
data_dir="$repo/tests/data/pgoutput"
corpus_dir="$repo/tests/fuzz/corpus/pgoutput"

cluster_dir=$(mktemp -d /tmp/pgtide-capture.XXXXXX)
chmod 755 "$cluster_dir"
trap '"$repo/scripts/clusters.sh" stop "$cluster_dir"' EXIT
"$repo/scripts/clusters.sh" start "$cluster_dir" >/dev/null
# shellcheck disable=SC1091
. "$cluster_dir/env"

psql_source() { psql "$SOURCE_URL" -X -q -v ON_ERROR_STOP=1 "$@"; }
# Workload statements: their results and NOTICEs are noise here.
psql_workload() { psql_source -o /dev/null -c 'SET client_min_messages = warning' -f -; }

# Options per slot, as the SQL interface takes them (name, value, name, value, ...).
plain_options="'proto_version', '2', 'publication_names', 'pub', 'messages', 'true', 'streaming', 'on'"
binary_options="'proto_version', '2', 'publication_names', 'pub', 'binary', 'true'"
twophase_options="'proto_version', '3', 'publication_names', 'pub', 'messages', 'true', 'streaming', 'on', 'two_phase', 'on'"

# capture SCENARIO SLOT OPTIONS: read (and consume) everything SLOT has, save it, and move
# the other slots to the same point so the next scenario starts clean.
capture() {
  local scenario=$1 slot=$2 options=$3
  local out="$data_dir/$scenario.hex"
  {
    echo "# pgoutput messages captured by scripts/capture-pgoutput.sh from PostgreSQL $(psql_source -At -c 'SHOW server_version')"
    echo "# slot $slot, options: $options"
    echo "# one message per line: lsn xid hex-bytes (xid is the SQL interface's, not a message field)"
    # The clusters run with synchronous_commit = off, and the SQL interface decodes only up
    # to the flushed WAL position: commit one write synchronously first, which flushes all WAL
    # before it, or the newest transactions would be missing (and the capture would vary).
    # (It must write a row: a transaction that only takes an xid commits asynchronously.)
    # "filler" is unpublished, so the marker itself emits nothing.
    # A 64kB work_mem (the minimum) makes the bulk transactions below stream.
    psql_source -At -F ' ' <<SQL
SET synchronous_commit = on;
INSERT INTO filler VALUES (0, 'flush marker');
SET logical_decoding_work_mem = '64kB';
SELECT lsn, xid, encode(data, 'hex')
FROM pg_logical_slot_get_binary_changes('$slot', NULL, NULL, $options);
SQL
  } >"$out"
  for other in plain binary twophase; do
    [ "$other" = "$slot" ] && continue
    psql_source -At -c "SELECT pg_replication_slot_advance('$other', pg_current_wal_lsn())" >/dev/null
  done
  local n=0
  grep -v '^#' "$out" | while read -r _lsn _xid hex; do
    [ -n "$hex" ] || continue
    n=$((n + 1))
    printf '%s' "$hex" | xxd -r -p >"$corpus_dir/$(printf '%s-%03d' "$scenario" "$n")"
  done
  # The whole scenario as one fuzz input: frames of "I16 length, message" (the fuzzer's
  # stream mode), so mutations start from a realistic Relation-then-changes sequence.
  # Frames over 64 KB cannot be expressed and are left out.
  grep -v '^#' "$out" | while read -r _lsn _xid hex; do
    if [ -z "$hex" ] || [ "${#hex}" -ge 131072 ]; then continue; fi
    printf '%04x%s' $(( ${#hex} / 2 )) "$hex"
  done | xxd -r -p >"$corpus_dir/$scenario-sequence"
  echo "capture-pgoutput: $scenario: $(grep -vc '^#' "$out") messages -> ${out#"$repo"/}"
  [ "$(grep -vc '^#' "$out")" -gt 0 ] || { echo "capture-pgoutput: $scenario: slot $slot returned nothing" >&2; exit 1; }
}

mkdir -p "$data_dir" "$corpus_dir"
rm -f "$data_dir"/*.hex "$corpus_dir"/*

# Schema. The publication must exist before the slots (PG < 18 fails otherwise).
# "filler" is deliberately left out of the publication: its rows fill the reorder buffer past
# logical_decoding_work_mem (so transactions stream) without bloating the captured output.
psql_workload <<'SQL'
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE point3 AS (x int, y int, z int);
CREATE TABLE items (
  id   int PRIMARY KEY,
  name text,
  qty  int,
  mood mood,
  pos  point3,
  note text
);
-- Out of line and uncompressed, so a 3000-byte note is a real TOAST pointer.
ALTER TABLE items ALTER COLUMN note SET STORAGE EXTERNAL;
CREATE TABLE fullrow (id int, val text);
ALTER TABLE fullrow REPLICA IDENTITY FULL;
CREATE TABLE trunc_parent (id serial PRIMARY KEY);
CREATE TABLE trunc_child (id int REFERENCES trunc_parent);
CREATE TABLE filler (id int, pad text);
CREATE PUBLICATION pub FOR TABLE items, fullrow, trunc_parent, trunc_child;
SELECT pg_create_logical_replication_slot('plain', 'pgoutput');
SELECT pg_create_logical_replication_slot('binary', 'pgoutput');
SELECT pg_create_logical_replication_slot('twophase', 'pgoutput', false, true);
SQL

# --- plain: Begin, Commit, Relation, Type, Insert, Update (none/K/O), Delete (K/O), Truncate,
#     Message (transactional or not), Origin, unchanged TOAST 'u', NULL 'n', text 't'.
psql_workload <<'SQL'
INSERT INTO items VALUES (1, 'apple', 5, 'happy', ROW(1, 2, 3), NULL),
                         (2, 'banana', NULL, 'sad', NULL, 'short note');
UPDATE items SET qty = 6 WHERE id = 1;                -- key unchanged: no old tuple
UPDATE items SET id = 10 WHERE id = 2;                -- key changed: old key 'K'
INSERT INTO fullrow VALUES (1, 'one');
UPDATE fullrow SET val = 'uno' WHERE id = 1;          -- REPLICA IDENTITY FULL: old row 'O'
DELETE FROM fullrow WHERE id = 1;                     -- 'O'
DELETE FROM items WHERE id = 10;                      -- 'K'
BEGIN;
SELECT pg_logical_emit_message(true, 'pgtide', 'hello transactional');
INSERT INTO trunc_parent DEFAULT VALUES;
COMMIT;
SELECT pg_logical_emit_message(false, 'pgtide', 'hello outside');
TRUNCATE trunc_parent, trunc_child RESTART IDENTITY CASCADE;   -- options 3
TRUNCATE trunc_child;                                           -- options 0
TRUNCATE trunc_parent CASCADE;                                  -- options 1, child cascaded
INSERT INTO items VALUES (3, 'toasty', 1, 'ok', NULL, repeat('x', 3000));
UPDATE items SET qty = 2 WHERE id = 3;                -- note stays on disk: 'u'
-- A transaction replayed under a replication origin, as a subscriber would apply it.
SELECT pg_replication_origin_create('upstream');
SELECT pg_replication_origin_session_setup('upstream');
BEGIN;
SELECT pg_replication_origin_xact_setup('0/12345678', '2024-01-02 03:04:05+00');
INSERT INTO items VALUES (4, 'from-upstream', 7, 'ok', NULL, NULL);
COMMIT;
SELECT pg_replication_origin_session_reset();
SQL
capture plain plain "$plain_options"

# --- stream: Stream Start/Stop/Commit/Abort (subtransaction and whole transaction), with the
#     [xid] prefix on Relation, Type, Insert, Message and Truncate inside the blocks.
psql_workload <<'SQL'
BEGIN;
INSERT INTO items VALUES (100, 'stream-first', 1, 'ok', NULL, NULL);
SELECT pg_logical_emit_message(true, 'pgtide', 'inside a stream');
INSERT INTO filler SELECT g, repeat('f', 100) FROM generate_series(1, 1000) g;
INSERT INTO items VALUES (101, 'stream-second', 2, 'sad', ROW(4, 5, 6), NULL);
TRUNCATE trunc_child;
INSERT INTO filler SELECT g, repeat('f', 100) FROM generate_series(1, 1000) g;
COMMIT;

BEGIN;
INSERT INTO items VALUES (200, 'kept', 1, 'ok', NULL, NULL);
INSERT INTO filler SELECT g, repeat('f', 100) FROM generate_series(1, 1000) g;
SAVEPOINT sp;
INSERT INTO items VALUES (201, 'rolled-back', 1, 'ok', NULL, NULL);
INSERT INTO filler SELECT g, repeat('f', 100) FROM generate_series(1, 1000) g;
ROLLBACK TO SAVEPOINT sp;
INSERT INTO items VALUES (202, 'after-savepoint', 1, 'ok', NULL, NULL);
COMMIT;

BEGIN;
INSERT INTO items VALUES (300, 'aborted', 1, 'ok', NULL, NULL);
INSERT INTO filler SELECT g, repeat('f', 100) FROM generate_series(1, 1000) g;
ROLLBACK;
SQL
capture stream plain "$plain_options"

# --- binary: TupleData kind 'b' (and 'n').
psql_workload <<'SQL'
INSERT INTO items VALUES (5, 'binary-row', 42, 'happy', ROW(7, 8, 9), NULL);
SQL
capture binary binary "$binary_options"

# --- twophase: Begin Prepare, Prepare, Commit Prepared, Rollback Prepared, Stream Prepare.
psql_workload <<'SQL'
BEGIN;
INSERT INTO items VALUES (400, 'prepared-commit', 1, 'ok', NULL, NULL);
PREPARE TRANSACTION 'gid-commit';
COMMIT PREPARED 'gid-commit';

BEGIN;
INSERT INTO items VALUES (401, 'prepared-rollback', 1, 'ok', NULL, NULL);
PREPARE TRANSACTION 'gid-rollback';
ROLLBACK PREPARED 'gid-rollback';

BEGIN;
INSERT INTO items VALUES (402, 'stream-prepared', 1, 'ok', NULL, NULL);
INSERT INTO filler SELECT g, repeat('f', 100) FROM generate_series(1, 1000) g;
PREPARE TRANSACTION 'gid-stream';
COMMIT PREPARED 'gid-stream';
SQL
capture twophase twophase "$twophase_options"

echo "capture-pgoutput: $(du -sh "$data_dir" | cut -f1) in ${data_dir#"$repo"/}, $(find "$corpus_dir" -type f | wc -l) seed files"
