-- lapse_block.lua: forget a block that has ended, unless it changed since it was read.
--
-- KEYS[1] state: the user's hash (see check.lua)
-- ARGV[1] blocked_until as read (ms since the epoch), proof that nobody blocked again since
-- ARGV[2 ...] the fields of a block (blocked_until, reason, ... auto_offences)
-- Returns the number of fields left (0: the hash is gone, with only user_id left it is
-- deleted), or -1 when blocked_until changed and nothing was done.

if redis.call("HGET", KEYS[1], "blocked_until") ~= ARGV[1] then
  return -1
end
for index = 2, #ARGV do
  redis.call("HDEL", KEYS[1], ARGV[index])
end
if redis.call("HLEN", KEYS[1]) <= 1 then
  redis.call("DEL", KEYS[1])
  return 0
end
return redis.call("HLEN", KEYS[1])
