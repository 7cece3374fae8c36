-- tide.cmd.args — the command line's options: "--flag", "--key value" / "--key=value",
-- repeatable keys, and -e CHUNK, apart from the positional arguments.
local M = {}

-- Split "--flag", "--key value"/"--key=value" options from positional arguments.
-- spec: { flag = "boolean" | "string" | "list" } ("list": repeatable, the values in order)
function M.parse(args, spec)
  local opts, positional = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local key, value = a:match("^%-%-([%w%-]+)=(.*)$")
    key = key or a:match("^%-%-([%w%-]+)$")
    if key then
      local kind = spec[key]
      if not kind then return nil, "unknown option --" .. key end
      if kind == "boolean" then
        opts[key] = true
      else
        if not value then
          i = i + 1
          value = args[i]
          if not value then return nil, "option --" .. key .. " needs a value" end
        end
        if kind == "list" then
          opts[key] = opts[key] or {}
          table.insert(opts[key], value)
        else
          opts[key] = value
        end
      end
    elseif a == "-e" and spec.e then
      i = i + 1
      opts.e = args[i]
      if not opts.e then return nil, "-e needs a chunk of Lua" end
    else
      positional[#positional + 1] = a
    end
    i = i + 1
  end
  return opts, positional
end

return M
