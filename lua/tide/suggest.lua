-- tide.suggest — "did you mean": the known name closest to a mistyped one.
--
--   suggest.distance(a, b) → the edit distance (insertions, deletions, substitutions)
--   suggest.closest(word, known) → the name among the keys of `known` with the smallest
--       distance to `word` (ties: the first in byte order), or nil when even that one is too
--       far to be a typo: more than 2 edits, or more than a third of the word for longer words
--   suggest.hint(word, known) → " (did you mean 'name'?)", or "" when there is no close name
local M = {}

function M.distance(a, b)
  local row = {}
  for j = 0, #b do row[j] = j end
  for i = 1, #a do
    local diagonal = row[0]
    row[0] = i
    for j = 1, #b do
      local above = row[j]
      row[j] = math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a:byte(i) == b:byte(j) and 0 or 1))
      diagonal = above
    end
  end
  return row[#b]
end

function M.closest(word, known)
  if type(word) ~= "string" then return nil end
  local best, best_distance
  for name in pairs(known) do
    if type(name) == "string" then
      local d = M.distance(word, name)
      if not best_distance or d < best_distance or (d == best_distance and name < best) then
        best, best_distance = name, d
      end
    end
  end
  if best and best_distance <= math.max(2, #word // 3) then return best end
end

function M.hint(word, known)
  local name = M.closest(word, known)
  return name and (" (did you mean '" .. name .. "'?)") or ""
end

return M
