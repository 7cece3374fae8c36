-- tide.cdc.reverse: the reverse task's playbook, generated from a forward task's plan, loads as
-- a playbook whose select keeps exactly the migrated tables and sequences (by their target
-- names, partitions one by one) and whose rename maps each name back, odd names included; its
-- sides are the forward playbook's, swapped; the skip_origins pair the two tasks.
local T = require "testlib"
local playbook = require "tide.playbook"
local reverse = require "tide.cdc.reverse"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function load(path) return coroutine.wrap(playbook.load)(path) end

-- A forward plan: a renamed table with a renamed column, a table whose names need quoting, a
-- partitioned table with two partitions, an unlogged table (not followed), a sequence.
local function plan()
  local p = {
    tables = {
      { key = "public.events", source = { schema = "public", name = "events" },
        target = { schema = "shop", name = "events_moved" },
        columns = { { name = "id" }, { name = "note", target = "remark" } } },
      { key = 'odd."a.b"', source = { schema = "odd", name = 'we"ird.t*' },
        target = { schema = "odd.s", name = 'we"ird.t*' }, columns = { { name = "x" } } },
      { key = "public.pay_1", parent = "public.pay", source = { schema = "public", name = "pay_1" },
        target = { schema = "shop", name = "pay_1" }, columns = { { name = "id" } } },
      { key = "public.pay_2", parent = "public.pay", source = { schema = "public", name = "pay_2" },
        target = { schema = "shop", name = "pay_2" }, columns = { { name = "id" } } },
      { key = "public.scratch", unlogged = true, source = { schema = "public", name = "scratch" },
        target = { schema = "shop", name = "scratch" }, columns = { { name = "id" } } },
    },
    sequences = { { source = { schema = "public", name = "events_id_seq" },
                    target = { schema = "shop", name = "events_id_seq" } } },
  }
  p.by_key = { ["table:public.pay"] = { schema = "public", name = "pay", target = { schema = "shop", name = "pay" } } }
  return p
end

T.test("the generated reverse playbook selects the migrated tables by target name and renames them back", function(ctx)
  local dir = ctx.tmpdir .. "/reverse_unit_" .. math.random(1 << 30)
  assert(os.execute("mkdir -p " .. dir))
  write(dir .. "/fwd.lua", [[
local tide = require "tide"
return tide.task { name = "fwd", source = "host=old.invalid password=secret1 dbname=a",
                   target = "host=new.invalid password=secret2 dbname=b",
                   migrate = { "schema", "full", "incremental" }, cutover = { reverse = true, verify = "counts" } }
]])
  local fwd = load(dir .. "/fwd.lua")
  T.eq(reverse.path(fwd), dir .. "/fwd-reverse.lua")
  local text = reverse.render(fwd, plan())
  T.eq(reverse.render(fwd, plan()), text, "the same plan renders the same text (a retried cutover)")
  T.nomatch(text, "secret", "no password is written")
  T.nomatch(text, "invalid", "no conninfo is written")
  write(reverse.path(fwd), text)
  local rev = load(reverse.path(fwd))
  T.eq(rev.name, "fwd-reverse")
  T.eq(rev.reverse_of, "fwd")
  T.eq(rev.migrate, { "incremental" })
  T.eq(rev.cutover.verify, "counts")
  T.eq(rev.incremental.ddl, true, "DDL replication as the forward task has it (on by default)")
  T.eq(playbook.conninfo(rev, "source"), "host=new.invalid password=secret2 dbname=b")
  T.eq(playbook.conninfo(rev, "target"), "host=old.invalid password=secret1 dbname=a")

  local sel = require("tide.select").compile(rev.select)
  local function kept(schema, name) return (sel:object("table", schema, name)) == true end
  T.ok(kept("shop", "events_moved") and kept("odd.s", 'we"ird.t*') and kept("shop", "pay") and
       kept("shop", "pay_1") and kept("shop", "pay_2"), "every followed table and partition is selected")
  T.ok(sel:object("sequence", "shop", "events_id_seq"), "the sequence is selected")
  T.ok(not kept("shop", "scratch"), "an unlogged table is not followed")
  T.ok(not kept("odd.s", 'we"ird.tx'), "a glob character in a name is matched as itself")
  T.ok(not kept("shop", "events_moved_2"), "nothing else")

  local map = require("tide.rename").compile(rev.rename)
  T.eq({ map:table("shop", "events_moved") }, { "public", "events" })
  T.eq({ map:table("odd.s", 'we"ird.t*') }, { "odd", 'we"ird.t*' })
  T.eq({ map:table("shop", "pay") }, { "public", "pay" })
  T.eq({ map:table("shop", "pay_2") }, { "public", "pay_2" })
  T.eq(map:column("shop", "events_moved", "remark"), "note")
  T.eq({ map:object("sequence", "shop", "events_id_seq") }, { "public", "events_id_seq" })
  os.remove(reverse.path(fwd))
  os.remove(dir .. "/fwd.lua")
  os.remove(dir)
end)

T.test("the two tasks skip each other's replication origin, and only that one", function()
  local fwd = { name = "Shop-Move", cutover = { reverse = true } }
  T.eq(reverse.name(fwd), "Shop-Move-reverse")
  T.eq(reverse.skip_origins(fwd), { "pgtide_shop_move_reverse" })
  T.eq(reverse.skip_origins({ name = "Shop-Move-reverse", reverse_of = "Shop-Move" }), { "pgtide_shop_move" })
  T.eq(reverse.skip_origins({ name = "plain" }), {})
  T.eq(reverse.name({ name = string.rep("a", 40) }), string.rep("a", 32) .. "-reverse")
end)
