-- top.lua: the most refused members over a window's slices, reading only the top of each.
--
-- KEYS[1 ...] the slices: sorted sets of refusal counts (each trimmed to its top K)
-- ARGV[1] count: how many members to return (at least 1)
-- ARGV[2] per_slice: how many of each slice's largest members are added up (M, at least 1)
-- Returns member, total, member, total, ...: the count largest totals, largest first (ties:
-- the greater member first, as ZREVRANGE ranks them); totals as decimal strings. Cost:
-- O(slices x M) whatever the number of subjects ever refused; the caller keeps
-- slices x M within a budget.

local count = tonumber(ARGV[1])
local per_slice = tonumber(ARGV[2])
local totals = {}
local names = {}
for index = 1, #KEYS do
  local rows = redis.call("ZREVRANGE", KEYS[index], 0, per_slice - 1, "WITHSCORES")
  for row = 1, #rows, 2 do
    local name = rows[row]
    local total = totals[name]
    if total == nil then
      names[#names + 1] = name
      totals[name] = tonumber(rows[row + 1])
    else
      totals[name] = total + tonumber(rows[row + 1])
    end
  end
end
table.sort(names, function(a, b)
  local x, y = totals[a], totals[b]
  if x ~= y then
    return x > y
  end
  return a > b
end)
local reply = {}
for index = 1, math.min(count, #names) do
  reply[#reply + 1] = names[index]
  reply[#reply + 1] = string.format("%.0f", totals[names[index]])
end
return reply
