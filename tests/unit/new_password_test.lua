-- pgtide new: passwords are taken out of the conninfo strings before the playbook is written.
local T = require "testlib"
local new = require "tide.cmd.new"

local function strip(s) return table.pack(new.strip_password(s)) end

T.test("URIs: the password of the user info and password query parameters go", function()
  local r = strip("postgresql://app:s3cret@db.example:5432/shop")
  T.eq(r[1], "postgresql://app@db.example:5432/shop"); T.eq(r[2], { "s3cret" })
  r = strip("postgres://app:p%40ss%3Aw@h1:5432,h2:5433/shop?sslmode=require&password=two%20x&connect_timeout=5")
  T.eq(r[1], "postgres://app@h1:5432,h2:5433/shop?sslmode=require&connect_timeout=5")
  T.eq(r[2], { "p@ss:w", "two x" })
  -- the last '@' ends the user info: a password holding '@' unencoded
  r = strip("postgresql://app:a@b@host/db")
  T.eq(r[1], "postgresql://app@host/db"); T.eq(r[2], { "a@b" })
  r = strip("postgresql://host/db?sslpassword=k&application_name=x")
  T.eq(r[1], "postgresql://host/db?application_name=x"); T.eq(r[2], { "k" })
  -- nothing to take out
  r = strip("postgresql://app@host/db")
  T.eq(r[1], "postgresql://app@host/db"); T.eq(r[2], {})
end)

T.test("key = value strings: bare and quoted password values go, the rest stays", function()
  local r = strip("host=db user=app password=s3cret dbname=shop")
  T.eq(r[1], "host=db user=app dbname=shop"); T.eq(r[2], { "s3cret" })
  r = strip("host=db password = 'it\\'s \\\\ x' dbname='my db'")
  T.eq(r[1], "host=db dbname='my db'")
  T.eq(r[2], { "it's \\ x" })
  r = strip("PASSWORD=x1 host=db")
  T.eq(r[1], "host=db"); T.eq(r[2], { "x1" })
  r = strip("host=db dbname=shop")
  T.eq(r[1], "host=db dbname=shop"); T.eq(r[2], {})
end)
