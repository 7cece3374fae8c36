# shellcheck shell=bash
# Datasets of the full-load benchmarks (sourced by scripts/bench-full.sh and scripts/bench-scale.sh).
#
# Every dataset is deterministic: values come from generate_series and md5/arithmetic on the
# row number, never from random() or now(), so two builds of one shape hold the same rows.
# K (the scale-down divisor, 1 = full size) divides every row count and the pgbench scale, so
# a quick check of the scripts builds the same shape, smaller.
#
#   shape_describe SHAPE K          one line: what the shape holds
#   shape_settings SHAPE            the server settings the shape's runs use (ALTER SYSTEM lines)
#   shape_build SHAPE URL K PGBIN   create the shape's tables in the (empty) database URL
#   dataset_many_tables URL TABLES ROWS   the schema-per-tenant shape (also bench-scale.sh)
#   database_fingerprint URL        one line per table (row count), index and constraint counts,
#                                   sequence values: equal on source and target after a full copy
#   set_aside_database ADMIN_URL NAME NEW   rename database NAME to NEW (ending its sessions
#                                   first), then create NAME again, empty

scaled() {  # scaled N K → max(1, N / K)
  local n=$(( $1 / $2 ))
  [ "$n" -ge 1 ] || n=1
  echo "$n"
}

shape_describe() {
  local k=$2
  case "$1" in
    current) echo "pgbench scale $(scaled 60 "$k"); mixed: $(scaled 2500000 "$k") rows (text, numeric, timestamptz, jsonb, bytea, uuid, int[]; btree + GIN index); toasted: $(scaled 12000 "$k") rows of 19 kB out-of-line text; nokey: $(scaled 1000000 "$k") rows, no key; fsync off" ;;
    shape1) echo "pgbench scale $(scaled 60 "$k") (no foreign keys, empty keyless history); customers: $(scaled 600000 "$k") rows (bigint key, uuid, varchar, text, boolean, numeric, timestamptz, text[], jsonb; 3 secondary indexes); orders: $(scaled 1300000 "$k") rows (foreign key to customers, sequence-fed column, int[], jsonb; 3 secondary indexes); documents: $(scaled 60000 "$k") rows of 4 kB poorly-compressible text + 1 kB bytea (TOAST; foreign key to orders); events: $(scaled 1200000 "$k") rows, no key, one index; fsync, full_page_writes, synchronous_commit on" ;;
    shape2) echo "$(shape2_tables "$k") tables of 500 rows in 10 schemas, a primary key and a secondary index each, three in four with a foreign key to another; fsync off" ;;
    *) return 1 ;;
  esac
}

shape2_tables() { local n=$(( 2000 / $1 )); [ "$n" -ge 10 ] || n=10; echo "$n"; }

# The throwaway clusters run with fsync, full_page_writes and synchronous_commit off (fast
# tests); shape1 measures a server that writes durably, as a production source and target do.
# All three are reloadable, so one pair of clusters serves every shape.
shape_settings() {
  case "$1" in
    shape1) printf '%s\n' "ALTER SYSTEM SET fsync = on" "ALTER SYSTEM SET full_page_writes = on" \
      "ALTER SYSTEM SET synchronous_commit = on" ;;
    *) printf '%s\n' "ALTER SYSTEM RESET fsync" "ALTER SYSTEM RESET full_page_writes" \
      "ALTER SYSTEM RESET synchronous_commit" ;;
  esac
}

shape_build() {  # shape_build SHAPE URL K PGBIN
  local shape=$1 url=$2 k=$3 pgbin=$4
  case "$shape" in
    current)
      "$pgbin/pgbench" -i -q -s "$(scaled 60 "$k")" "$url" >/dev/null 2>&1
      dataset_current "$url" "$(scaled 2500000 "$k")" "$(scaled 12000 "$k")" "$(scaled 1000000 "$k")" ;;
    shape1)
      "$pgbin/pgbench" -i -q -s "$(scaled 60 "$k")" "$url" >/dev/null 2>&1
      dataset_shape1 "$url" "$(scaled 600000 "$k")" "$(scaled 1300000 "$k")" "$(scaled 60000 "$k")" \
        "$(scaled 1200000 "$k")" ;;
    shape2) dataset_many_tables "$url" "$(shape2_tables "$k")" 500 ;;
  esac
  psql -qX -v ON_ERROR_STOP=1 "$url" -c "VACUUM ANALYZE" >/dev/null
}

dataset_current() {  # dataset_current URL MIXED TOASTED NOKEY
  psql -qX -v ON_ERROR_STOP=1 "$1" <<SQL
CREATE TABLE mixed (id bigint PRIMARY KEY, t text, n numeric, ts timestamptz, j jsonb, b bytea, u uuid, arr int[]);
INSERT INTO mixed SELECT g, 'row ' || g || ' ' || md5(g::text), g * 3.14159, timestamptz '2020-01-01' + g * interval '1 s',
  jsonb_build_object('id', g, 'tag', 't' || (g % 100), 'ok', g % 2 = 0), decode(md5(g::text), 'hex'),
  md5((g * 7)::text)::uuid, ARRAY[g, g % 1000, g % 7]
FROM generate_series(1, $2) g;
CREATE INDEX mixed_ts ON mixed (ts);
CREATE INDEX mixed_j ON mixed USING gin (j);
CREATE TABLE toasted (id int PRIMARY KEY, doc text);
ALTER TABLE toasted ALTER doc SET STORAGE EXTERNAL;
INSERT INTO toasted SELECT g, (SELECT string_agg(md5((g * 1000 + i)::text), '') FROM generate_series(1, 600) i)
FROM generate_series(1, $3) g;
CREATE TABLE nokey (a int, b text, c timestamptz);
INSERT INTO nokey SELECT g % 1000, repeat(md5(g::text), 2), timestamptz '2021-01-01' + g * interval '1 min'
FROM generate_series(1, $4) g;
SQL
}

# An application's tables beside pgbench's: keys, foreign keys loaded after the rows (as a
# restore would), a sequence-fed column, arrays and jsonb, TOASTed text that pglz cannot
# shrink (hex digits repeat no substring), and a keyless append-only table.
dataset_shape1() {  # dataset_shape1 URL CUSTOMERS ORDERS DOCUMENTS EVENTS
  local customers=$2 orders=$3 documents=$4 events=$5
  psql -qX -v ON_ERROR_STOP=1 "$1" <<SQL
CREATE TABLE customers (
  id bigint PRIMARY KEY, uid uuid NOT NULL, name varchar(100) NOT NULL, email text NOT NULL,
  active boolean NOT NULL, credit numeric(12,2), created_at timestamptz NOT NULL, tags text[], profile jsonb);
INSERT INTO customers
SELECT g, md5('customer ' || g)::uuid, 'Customer ' || g || ' ' || substr(md5(g::text), 1, 12),
  'user' || g || '@' || (ARRAY['example.com', 'mail.test', 'corp.invalid'])[1 + g % 3],
  g % 7 <> 0, round(((g::bigint * 7919) % 1000000) / 100.0, 2),
  timestamptz '2019-01-01 00:00:00+00' + ((g * 37) % 157680000) * interval '1 s',
  ARRAY['tier' || (g % 4), 'region' || (g % 12)] || CASE WHEN g % 5 = 0 THEN ARRAY['vip'] ELSE '{}' END,
  jsonb_build_object('lang', (ARRAY['en', 'fr', 'de', 'es'])[1 + g % 4], 'score', g % 1000, 'newsletter', g % 3 = 0,
    'address', jsonb_build_object('city', 'City ' || (g % 5000), 'zip', lpad((g % 100000)::text, 5, '0')))
FROM generate_series(1, $customers) g;
CREATE UNIQUE INDEX customers_uid ON customers (uid);
CREATE INDEX customers_email ON customers (lower(email));
CREATE INDEX customers_tags ON customers USING gin (tags);

CREATE SEQUENCE order_numbers START 100000;
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id bigint NOT NULL, number bigint NOT NULL DEFAULT nextval('order_numbers'),
  placed_at timestamptz NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL, items int[] NOT NULL, details jsonb);
ALTER SEQUENCE order_numbers OWNED BY orders.number;
INSERT INTO orders (id, customer_id, placed_at, status, total, items, details)
SELECT g, 1 + (g::bigint * 7919) % $customers, timestamptz '2020-01-01 00:00:00+00' + g * interval '97 s',
  (ARRAY['new', 'paid', 'shipped', 'delivered', 'returned'])[1 + g % 5], ((g * 131) % 100000) / 100.0,
  ARRAY[g % 1000, g % 977, g % 13],
  jsonb_build_object('channel', (ARRAY['web', 'app', 'phone'])[1 + g % 3], 'lines', 1 + g % 9,
    'note', CASE WHEN g % 10 = 0 THEN 'gift ' || md5(g::text) END)
FROM generate_series(1, $orders) g ORDER BY g;
ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE UNIQUE INDEX orders_number ON orders (number);
CREATE INDEX orders_status_placed ON orders (status, placed_at);

CREATE TABLE documents (id int PRIMARY KEY, order_id bigint NOT NULL, title text NOT NULL, body text, attachment bytea);
INSERT INTO documents
SELECT g, 1 + (g::bigint * 104729) % $orders, 'Document ' || g,
  (SELECT string_agg(md5(g || ':' || i), '') FROM generate_series(1, 128) i),
  decode((SELECT string_agg(md5(i || '/' || g), '') FROM generate_series(1, 64) i), 'hex')
FROM generate_series(1, $documents) g;
ALTER TABLE documents ADD FOREIGN KEY (order_id) REFERENCES orders (id);

CREATE TABLE events (at timestamptz NOT NULL, customer_id bigint, kind text NOT NULL, payload jsonb);
INSERT INTO events
SELECT timestamptz '2024-01-01 00:00:00+00' + g * interval '250 ms', 1 + (g * 31) % $customers,
  (ARRAY['login', 'view', 'cart', 'buy', 'logout'])[1 + g % 5], jsonb_build_object('n', g, 'ref', substr(md5(g::text), 1, 10))
FROM generate_series(1, $events) g;
CREATE INDEX events_at ON events (at);
SQL
}

# Schema per tenant: TABLES tables in 10 schemas, each a primary key, a secondary index and
# (three in four, from the eleventh on) a foreign key to the table ten before it; ROWS rows each.
dataset_many_tables() {  # dataset_many_tables URL TABLES ROWS
  psql -qX -v ON_ERROR_STOP=1 "$1" <<SQL
DO \$\$
DECLARE s int; i int; t text; p text;
BEGIN
  FOR s IN 0..9 LOOP EXECUTE format('CREATE SCHEMA tenant_%s', s); END LOOP;
  FOR i IN 1..$2 LOOP
    s := i % 10;
    t := format('tenant_%s.t%s', s, i);
    EXECUTE format('CREATE TABLE %s (id int PRIMARY KEY, parent int, v text NOT NULL, at timestamptz NOT NULL)', t);
    EXECUTE format('INSERT INTO %s SELECT g, g, md5(g::text), timestamptz ''2022-01-01 00:00:00+00'' + g * interval ''1 h''
                    FROM generate_series(1, $3) g', t);
    EXECUTE format('CREATE INDEX ON %s (v)', t);
    IF i > 10 AND i % 4 <> 0 THEN
      p := format('tenant_%s.t%s', s, i - 10);
      EXECUTE format('ALTER TABLE %s ADD FOREIGN KEY (parent) REFERENCES %s (id)', t, p);
    END IF;
    IF i % 500 = 0 THEN COMMIT; END IF;
  END LOOP;
END \$\$;
ANALYZE;
SQL
}

# What a complete copy must reproduce. Row counts are exact (count(*) of every table, in one
# statement through query_to_xml); the tools' own bookkeeping schemas are left out.
database_fingerprint() {  # database_fingerprint URL
  psql -qXAt -v ON_ERROR_STOP=1 "$1" <<'SQL'
WITH t AS (
  SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgtide', 'pgcopydb')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%')
SELECT format('table %I.%I rows %s', nspname, relname,
  (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', nspname, relname), false, true, '')))[1]::text)
FROM t
UNION ALL
SELECT format('indexes %s', count(*)) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgtide', 'pgcopydb')
  AND n.nspname NOT LIKE 'pg\_toast%'
UNION ALL
SELECT format('constraints %s %s', contype, count(*)) FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgtide', 'pgcopydb') GROUP BY contype
UNION ALL
SELECT format('sequence %I.%I %s', schemaname, sequencename, last_value) FROM pg_sequences
  WHERE schemaname NOT IN ('pgtide', 'pgcopydb')
ORDER BY 1;
SQL
}

# A benchmark run's previous copy is renamed rather than dropped: on ext4 without a journal
# (the development machine's root file system) every new inode skips the ones freed in the last
# 60 s, and the thousands of files a dropped copy frees made the next run's file creation a
# large part of its time (docs/performance.md, "shape2 at full size"). A backend of the
# previous run may still be exiting: it is ended, then the rename retried (as DROP ... FORCE
# would).
set_aside_database() {  # set_aside_database ADMIN_URL NAME NEW
  local try
  for try in $(seq 1 100); do
    [ "$(psql -qXAt "$1" -c "SELECT count(*) FROM pg_database WHERE datname = '$2'")" = 0 ] && break
    psql -qXAt "$1" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$2'" >/dev/null
    psql -qX "$1" -c "ALTER DATABASE \"$2\" RENAME TO \"$3\"" 2>/dev/null && break
    [ "$try" -lt 100 ] || { echo "could not set aside the database $2" >&2; return 1; }
    sleep 0.1
  done
  psql -qX "$1" -c "CREATE DATABASE \"$2\""
}
