-- tide.full's scheduling rules: how "auto" splits tables, which post-data step a free job
-- takes, and which ones it leaves for later.
local T = require "testlib"
local full = require "tide.full"
local parts = require "tide.full.parts"

local MB = 1024 * 1024

local function plan_of(sizes)
  local tables = {}
  for i, b in ipairs(sizes) do tables[i] = { key = "public.t" .. i, bytes = b } end
  return { tables = tables }
end

T.test('split_larger_than = "auto": 1/(2 x jobs) of the data, between 64 MB and 1 GB', function()
  local plan = plan_of({ 650 * MB, 540 * MB, 220 * MB, 190 * MB })   -- 1600 MB
  T.eq(parts.split_bytes({ full = { jobs = 4 } }, plan), 200 * MB)
  T.eq(parts.split_bytes({ full = { jobs = 4, split_larger_than = "auto" } }, plan), 200 * MB)
  T.eq(parts.split_bytes({ full = {} }, plan), 200 * MB, "jobs default to 4")
  T.eq(parts.split_bytes({ full = { jobs = 2 } }, plan), 400 * MB)
  T.eq(parts.split_bytes({ full = { jobs = 1 } }, plan), 0, "one job: nothing to gain by splitting")
  T.eq(parts.split_bytes({ full = { jobs = 4 } }, plan_of({ 10 * MB })), 64 * MB, "small databases: 64 MB")
  T.eq(parts.split_bytes({ full = { jobs = 2 } }, plan_of({ 100000 * MB })), 1024 * MB, "large ones: 1 GB")
  T.eq(parts.split_bytes({ full = { jobs = 4, split_larger_than = "500MB" } }, plan), 500 * MB, "a size is taken as it is")
  T.eq(parts.split_bytes({ full = { jobs = 4, split_larger_than = 0 } }, plan), 0)
end)

T.test("a split table gets at least one part per job", function()
  T.eq(parts.part_count(540 * MB, 200 * MB, 4), 4, "3 parts of 200 MB would leave a job idle")
  T.eq(parts.part_count(2000 * MB, 200 * MB, 4), 10)
  T.eq(parts.part_count(200 * MB, 200 * MB, 4), 1, "not larger than the threshold: one part")
  T.eq(parts.part_count(540 * MB, 0, 4), 1, "0: never split")
  T.eq(parts.part_count(100000 * MB, 100 * MB, 4), 64, "at most 64 parts")
end)

-- A load as full.run builds it, reduced to what the step scheduler reads.
local function load_of(steps, sizes)
  local load = { steps = steps, steps_running = {}, done_steps = {}, post_keys = {}, loaded = {},
                 table_parts = {}, tables_by_key = {}, total_bytes = 0, jobs = 4 }
  for key, bytes in pairs(sizes) do
    load.total_bytes = load.total_bytes + bytes
    load.tables_by_key[key] = { key = key, bytes = bytes }
    load.table_parts[key] = { {} }
    load.loaded[key] = true
  end
  for _, s in ipairs(steps) do load.post_keys[s.key] = true end
  return load
end

local function step(key, kind, tbl, sql, extra)
  local s = { key = key, kind = kind, table = tbl, sql = sql, after = {}, needs_data = { tbl } }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

T.test("the most expensive ready step first: a GIN build before btree builds", function()
  local steps = {
    step("pk_idx", "index", "public.big", "CREATE UNIQUE INDEX big_pkey ON public.big USING btree (id)"),
    step("ts_idx", "index", "public.big", "CREATE INDEX big_ts ON public.big USING btree (ts)"),
    step("small_idx", "index", "public.small", "CREATE INDEX small_a ON public.small USING btree (a)"),
    step("gin_idx", "index", "public.big", "CREATE INDEX big_j ON public.big USING gin (j)"),
  }
  local load = load_of(steps, { ["public.big"] = 500 * MB, ["public.small"] = 1 * MB })
  local gin = full._next_step(load)
  T.eq(gin.key, "gin_idx")
  T.ok(gin.critical, "a GIN build on a table with more than 1/(2 x jobs) of the data is critical")
  local pk = full._next_step(load)
  T.eq(pk.key, "pk_idx", "then the btree builds of the big table, in plan order")
  T.eq(full._next_step(load), nil, "beside a critical build, one other step at a time")
  full._step_done(load, pk)
  load.copying = 1
  T.eq(full._next_step(load), nil, "... and none while copies still run")
  load.copying = 0
  T.eq(full._next_step(load).key, "ts_idx", "index builds of one table run together")
  full._step_done(load, gin)
  T.eq(full._next_step(load).key, "small_idx", "without a critical build, index_jobs steps at once")
  T.eq(full._next_step(load), nil)
end)

T.test("a GIN build on a small table is not critical and crowds nothing", function()
  local steps = {
    step("gin_idx", "index", "public.small", "CREATE INDEX small_j ON public.small USING gin (j)"),
    step("a_idx", "index", "public.big", "CREATE INDEX big_a ON public.big USING btree (a)"),
    step("b_idx", "index", "public.big", "CREATE INDEX big_b ON public.big USING btree (b)"),
  }
  local load = load_of(steps, { ["public.big"] = 500 * MB, ["public.small"] = 10 * MB })
  local picked = {}
  for _ = 1, 3 do local st = full._next_step(load); picked[#picked + 1] = st and st.key; T.ok(st and not st.critical) end
  T.eq(#picked, 3, "all three run together")
end)

T.test("copies are capped while the critical build runs, and from when its table's last part started", function()
  local steps = { step("gin_idx", "index", "public.big", "CREATE INDEX big_j ON public.big USING gin (j)") }
  local load = load_of(steps, { ["public.big"] = 500 * MB, ["public.other"] = 500 * MB })
  load.critical_tables = { ["public.big"] = true }
  load.loaded["public.big"] = false
  load.parts_left = { ["public.big"] = 2, ["public.other"] = 4 }
  local big, other = { table = { key = "public.big" } }, { table = { key = "public.other" } }
  load.queue, load.next_index = { big, big, other, other, other, other }, 1
  load.untaken = { ["public.big"] = 2, ["public.other"] = 4 }
  T.eq(full._copy_limit(load), 4, "parts of the critical table still to start: all jobs copy")
  load.next_index, load.untaken["public.big"] = 3, 0
  T.eq(full._copy_limit(load), 1, "its last part is under way: jobs // 4 copy")
  load.parts_left["public.big"] = 0
  load.loaded["public.big"] = true
  local gin = full._next_step(load)
  T.ok(gin and gin.critical)
  T.eq(full._copy_limit(load), 1, "while the build runs")
  full._step_done(load, gin)
  T.eq(full._copy_limit(load), 4, "after it: all jobs again")
  load.jobs = 16
  load.steps_running[gin] = true
  T.eq(full._copy_limit(load), 4, "16 jobs: 4 copy beside the build")
end)

T.test("a step needing a stronger lock waits while an index of its table is built", function()
  local steps = {
    step("pk_idx", "index", "public.big", "CREATE UNIQUE INDEX big_pkey ON public.big USING btree (id)"),
    step("gin_idx", "index", "public.big", "CREATE INDEX big_j ON public.big USING gin (j)"),
    step("pk", "constraint", "public.big", "ALTER TABLE ONLY public.big ADD CONSTRAINT big_pkey PRIMARY KEY USING INDEX big_pkey",
         { after = { "pk_idx" } }),
    step("fk", "fkey", "public.other", "ALTER TABLE ONLY public.other ADD CONSTRAINT f FOREIGN KEY (b) REFERENCES public.big (id)",
         { after = { "pk" }, needs_data = { "public.other", "public.big" } }),
    step("other_idx", "index", "public.other", "CREATE INDEX other_b ON public.other USING btree (b)"),
  }
  local load = load_of(steps, { ["public.big"] = 500 * MB, ["public.other"] = 10 * MB })
  local gin, pk_idx = full._next_step(load), full._next_step(load)
  T.eq(gin.key, "gin_idx"); T.eq(pk_idx.key, "pk_idx")
  full._step_done(load, pk_idx)
  -- The constraint is ready (its index is built) but the GIN build holds the table.
  T.eq(full._next_step(load).key, "other_idx", "the job takes other work instead")
  T.eq(full._next_step(load), nil, "the constraint waits for the GIN build")
  full._step_done(load, gin)
  local pk = full._next_step(load)
  T.eq(pk and pk.key, "pk")
  full._step_done(load, pk)
  T.eq(full._next_step(load), nil, "the foreign key waits for the index build on its own table")
  full._step_done(load, steps[5])
  T.eq(full._next_step(load).key, "fk")
end)

T.test("small steps join one batch: a table's chain, then other small ready steps, never a large one", function()
  local steps = {
    step("a_pk_idx", "index", "s.a", "CREATE UNIQUE INDEX a_pkey ON s.a USING btree (id)"),
    step("a_pk", "constraint", "s.a", "ALTER TABLE ONLY s.a ADD CONSTRAINT a_pkey PRIMARY KEY USING INDEX a_pkey",
         { after = { "a_pk_idx" } }),
    step("b_fk", "fkey", "s.b", "ALTER TABLE ONLY s.b ADD CONSTRAINT b_a FOREIGN KEY (a) REFERENCES s.a (id)",
         { after = { "a_pk" }, needs_data = { "s.b", "s.a" } }),
    step("b_idx", "index", "s.b", "CREATE INDEX b_a ON s.b USING btree (a)"),
    step("c_idx", "index", "s.c", "CREATE INDEX c_x ON s.c USING btree (x)"),
    step("big_idx", "index", "s.big", "CREATE INDEX big_x ON s.big USING btree (x)"),
    step("d_pk", "constraint", "s.d", "ALTER TABLE ONLY s.d ADD CONSTRAINT d_pkey PRIMARY KEY (id)",
         { after = { "c_idx" } }),
  }
  local load = load_of(steps, { ["s.a"] = 64 * 1024, ["s.b"] = 64 * 1024, ["s.c"] = 64 * 1024,
                                ["s.big"] = 900 * MB, ["s.d"] = 64 * 1024 })
  load.loaded["s.c"] = false
  local other = {}
  local big = full._next_step(load, other)
  T.eq(big.key, "big_idx", "the large step first, in a unit of its own")
  T.ok(not full._small(big, load), "a step on a 900 MB table is not small")
  T.ok(not full._small(step("mv_idx", "index", "s.mv", "CREATE INDEX mv_x ON s.mv (x)"), load),
       "nor one on a relation the load does not size (a materialized view, a partitioned table)")
  T.ok(full._small({ key = "grant", kind = "grant", sql = "GRANT EXECUTE ON FUNCTION s.f() TO r" }, load),
       "a step on no table is")
  local unit = {}
  local first = full._next_step(load, unit)
  T.eq(first.key, "a_pk_idx", "the small ready steps in plan order")
  T.ok(full._small(first, load))
  local batch = { first.key }
  while true do
    local s = full._next_small_step(load, unit)
    if not s then break end
    batch[#batch + 1] = s.key
  end
  -- a_pk and b_fk wait only for steps of this batch: they follow in its transaction; b_idx
  -- is ready on its own; c_idx's table is not loaded, so neither it nor d_pk (after it) comes.
  T.eq(table.concat(batch, " "), "a_pk_idx a_pk b_fk b_idx")
  for _, key in ipairs(batch) do T.eq(load.steps_running[steps[({ a_pk_idx = 1, a_pk = 2, b_fk = 3, b_idx = 4 })[key]]], unit) end
  T.eq(full._next_step(load, {}), nil, "nothing else is ready")
  for i = 1, 4 do full._step_done(load, steps[i]) end
  T.eq(full._next_step(load, {}), nil, "the batch's steps done: none of them comes again")
end)

T.test("a batch does not take a step that conflicts with another unit's running step", function()
  local steps = {
    step("a_idx", "index", "s.a", "CREATE INDEX a_x ON s.a USING btree (x)"),
    step("b_idx", "index", "s.b", "CREATE INDEX b_x ON s.b USING btree (x)"),
    step("a_chk", "constraint", "s.a", "ALTER TABLE s.a ADD CONSTRAINT a_c CHECK (x > 0)"),
  }
  local load = load_of(steps, { ["s.a"] = 64 * 1024, ["s.b"] = 64 * 1024 })
  local u1, u2 = {}, {}
  T.eq(full._next_step(load, u1).key, "a_idx")
  T.eq(full._next_step(load, u2).key, "b_idx")
  T.eq(full._next_small_step(load, u2), nil, "a_chk would wait for u1's index build on s.a")
  T.eq(full._next_small_step(load, u1).key, "a_chk", "in u1's own transaction it follows the build")
end)
