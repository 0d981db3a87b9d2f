-- update_state.lua: change a subject's kill-switch hash atomically, on the store's clock.
--
-- KEYS[1] state: the subject's hash (see check.lua)
-- KEYS[2] optional: the subject's bucket, deleted (a full bucket) when its limit changes
-- ARGV[1] user id, kept in the hash so listings can name users whose key is a digest
-- ARGV[2] n: how many fields are set to a given value
-- ARGV[3] m: how many fields are set to now plus an offset
-- ARGV[4 ...] n pairs (field, value), then m pairs (field, offset in ms), then the names of
--             fields to delete
-- Returns {now_ms, field, value, field, value, ...}: the hash after the change, and Redis
-- TIME in ms. The hash is deleted once only user_id would be left.

local time = redis.call("TIME")
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local set_count = tonumber(ARGV[2])
local relative_count = tonumber(ARGV[3])

redis.call("HSET", KEYS[1], "user_id", ARGV[1])
local index = 4
for _ = 1, set_count do
  redis.call("HSET", KEYS[1], ARGV[index], ARGV[index + 1])
  index = index + 2
end
for _ = 1, relative_count do
  redis.call("HSET", KEYS[1], ARGV[index], string.format("%d", now_ms + tonumber(ARGV[index + 1])))
  index = index + 2
end
while index <= #ARGV do
  redis.call("HDEL", KEYS[1], ARGV[index])
  index = index + 1
end
if KEYS[2] then
  redis.call("DEL", KEYS[2])
end
if redis.call("HLEN", KEYS[1]) <= 1 then
  redis.call("DEL", KEYS[1])
end

local reply = redis.call("HGETALL", KEYS[1])
table.insert(reply, 1, now_ms)
return reply
