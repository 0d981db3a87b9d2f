-- top.lua: the most refused members over a window's slices, without returning the rest.
--
-- KEYS[1] scratch: a key of the slices' hash tag, written and deleted here
-- KEYS[2 ...] the slices: sorted sets of refusal counts (members trimmed to the top K)
-- ARGV[1] count: how many members to return (at least 1)
-- Returns member, count, member, count, ... : the count largest sums, largest first (ties in
-- member order). Cost: O(slices × K), whatever the number of subjects ever refused.

local count = tonumber(ARGV[1])
local slices = {}
for index = 2, #KEYS do
  slices[#slices + 1] = KEYS[index]
end
if #slices == 0 then
  return {}
end
redis.call("ZUNIONSTORE", KEYS[1], #slices, unpack(slices))
local rows = redis.call("ZREVRANGE", KEYS[1], 0, count - 1, "WITHSCORES")
redis.call("DEL", KEYS[1])
return rows
