-- revoke.lua: refuse one credential id until it would have expired anyway.
--
-- KEYS[1] revoked credential ids: sorted set, member = credential id, score = expiry (ms)
-- ARGV[1] credential id
-- ARGV[2] its expiry, ms since the epoch
-- Returns the number of ids still revoked. Expired ids are dropped, and the set expires
-- with its last member, so revocations cost nothing once they no longer matter.

local time = redis.call("TIME")
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now_ms)
local last = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
if last[2] then
  redis.call("PEXPIREAT", KEYS[1], last[2])
end
return redis.call("ZCARD", KEYS[1])
