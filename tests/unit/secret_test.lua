-- Secrets in DDL (tide.secret), without a server: a step shows its secret option values
-- masked and runs with the real ones; messages about it are masked.
local T = require "testlib"
local secret = require "tide.secret"
local ddl = require "tide.ddl"

T.test("secret options are recognised by name", function()
  for _, name in ipairs({ "password", "PASSWORD", "passwd", "sslpassword", "secret_key", "api_token", "pwd" }) do
    T.ok(secret.is_secret_option(name), name)
  end
  for _, name in ipairs({ "user", "host", "dbname", "port", "fetch_size" }) do
    T.ok(not secret.is_secret_option(name), name)
  end
end)

T.test("a step shows masked values, runs the real ones, and masks them in messages", function()
  local secrets = {}
  local shown, run = secret.options({ { "user", "bob" }, { "password", "it's s3cret" }, { "passwd", "" } },
    ddl.quote, ddl.literal, secrets)
  T.eq(shown, { "\"user\" 'bob'", "password '********'", "passwd ''" })
  T.eq(run, { "\"user\" 'bob'", "password 'it''s s3cret'", "passwd ''" })
  T.eq(secrets, { "it's s3cret" })
  local step = secret.keep({ sql = "CREATE USER MAPPING FOR bob SERVER s OPTIONS (" .. table.concat(shown, ", ") .. ")" },
    "CREATE USER MAPPING FOR bob SERVER s OPTIONS (" .. table.concat(run, ", ") .. ")", secrets)
  T.nomatch(step.sql, "s3cret")
  T.match(secret.sql(step), "password 'it''s s3cret'")
  -- The plan's copy of the step runs the same statement; a step without secrets runs its sql.
  local copy = secret.carry(step, { sql = step.sql })
  T.eq(secret.sql(copy), secret.sql(step))
  T.eq(secret.sql({ sql = "SELECT 1" }), "SELECT 1")
  T.eq(secret.hide(step, "near \"it''s s3cret\" and it's s3cret"), "near \"********\" and ********")
  -- Nothing in the step table holds the real value.
  for k, v in pairs(step) do T.ok(type(v) ~= "string" or not v:find("s3cret", 1, true), k) end
end)
