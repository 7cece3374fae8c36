local tide = require "tide"
return tide.task {
  name = "f", source = "host=a", target = "host=b", migrate = { "schema", "full" },
  select = { include = { "public.*", { re = "^s[0-9]+\\.t_.*$" } }, exclude = { "public.tmp_*" },
             columns = { ["public.users"] = { exclude = { "x" } } }, rows = { ["public.e"] = "id > 1" } },
  rename = { schema = { public = "shop" }, table = { { prefix = "x_" }, { case = "lower" } } },
  full = { jobs = 2, split_larger_than = "1GB", existing = "truncate" },
  precheck = { warn = { "table_without_key" }, ignore = { large_objects = "none here" } },
}
