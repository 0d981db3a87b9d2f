-- claim_reset.lua: one process of all an app's processes and servers delivers each required
-- password reset to the app's hook.
--
-- KEYS[1] state: the user's hash (see check.lua); a reset stores reset_id when required
-- ARGV[1] the reset's id
-- ARGV[2] "1" to claim, "0" to give a claim back (the hook failed: another may try)
-- Returns 1 when this call claimed (or gave back) the reset, 0 when it is not the user's
-- current reset or was already claimed (or not claimed by anyone).

if redis.call("HGET", KEYS[1], "reset_id") ~= ARGV[1] then
  return 0
end
local claimed = redis.call("HGET", KEYS[1], "reset_notified") == ARGV[1]
if ARGV[2] == "1" then
  if claimed then
    return 0
  end
  redis.call("HSET", KEYS[1], "reset_notified", ARGV[1])
  return 1
end
if not claimed then
  return 0
end
redis.call("HDEL", KEYS[1], "reset_notified")
return 1
