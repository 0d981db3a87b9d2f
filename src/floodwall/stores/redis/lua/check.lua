-- check.lua: the whole decision for one request, in one round trip.
-- Reads the subject's kill-switch state, then takes tokens from its bucket (GCRA, which is
-- a token bucket of capacity `burst` refilled at `rate` tokens per second), counts the
-- request in each route limit's moving window, and takes one of the subject's concurrency
-- slots: all or nothing.
--
-- KEYS[1] bucket: theoretical arrival time of the next request, µs since the epoch
-- KEYS[2] state: hash of blocked_until (ms, 0 = no end), not_before (ms),
--         reset_required ("1"), rate (tokens/s), burst (tokens), shadow ("1": the limit
--         is only observed, never enforced, for this subject)
-- KEYS[3] revoked credential ids: sorted set, member = credential id, score = expiry (ms)
-- KEYS[4] requests in flight: sorted set, member = request token, score = lease end (ms)
-- KEYS[5 ...] one moving window per route limit on this request: list of the times (µs) of
--         the subject's last `limit` admitted requests, newest first
-- ARGV[1] default rate, tokens per second (may be fractional)
-- ARGV[2] default burst, tokens
-- ARGV[3] cost of this request, tokens
-- ARGV[4] when the credential was issued, ms since the epoch, or "" if unknown
-- ARGV[5] credential id, or ""
-- ARGV[6] "1" if the path belongs to the password-reset flow, else "0"
-- ARGV[7] now, µs since the epoch, or "" for Redis TIME (tests inject time; apps never do;
--         injected time keeps keys a minute longer, as Redis expires them on its own clock)
-- ARGV[8] requests of one subject in flight at once, or "" (none); the state's
--         "concurrency" field, when set, is the subject's own limit, either way
-- ARGV[9] how long a slot is leased, ms (the worker renews the leases of its requests;
--         a crashed worker's slots end with their lease)
-- ARGV[10 ...] per window, three: its limit (requests), its period (µs), and the name of
--         the state field that overrides both for this subject ("limit:period_us"), or ""
-- Returns {code, remaining, retry_after_us, reset_after_us, rate, burst, blocked_until_ms,
--          shadow, policy, lease}
--   retry_after_us: for a timed block, how long it still lasts
--   code: 0 allowed, 1 limited, 2 blocked, 3 revoked, 4 password reset required,
--         8 too many requests in flight
--   rate is returned as a string: Redis truncates Lua numbers in replies to integers.
--   policy: 0 the bucket, i the window KEYS[4 + i] (for a window, rate and burst are its
--   limit per second and its limit)
--   lease: the slot an allowed request holds (its member of KEYS[4]), or ""

-- Timestamps near 1.7e15 µs are exact to about 0.25 µs as doubles; allow that much slack,
-- but never half a token (at a million requests a second a token is 1 µs).
local SLACK_US = 1

local now
local keep_ms = 0
if ARGV[7] ~= "" then
  now = tonumber(ARGV[7])
  keep_ms = 60000
else
  local time = redis.call("TIME")
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local now_ms = math.floor(now / 1000)

-- Expiries in whole ms, written with %d: Lua writes larger numbers as "1e+14", which Redis
-- refuses. The rule book keeps a bucket's time under ten years (3.2e13 ms), far within.
local function expiry_ms(ahead_us)
  return string.format("%d", math.max(1, math.ceil(ahead_us / 1000)) + keep_ms)
end

local fields = {
  "blocked_until", "not_before", "reset_required", "rate", "burst", "shadow", "concurrency"
}
local windows = #KEYS - 4
for i = 1, windows do
  local field = ARGV[9 + 3 * i]
  fields[7 + i] = field ~= "" and field or "-"
end
local state = redis.call("HMGET", KEYS[2], unpack(fields))
local shadow = state[6] == "1" and 1 or 0
-- The subject's own limit, when the rule book accepts it (floodwall.core.rules.limit; the
-- bounds are written in when the script is loaded); anything else, written by hand or by
-- an older version ("nan", "inf", 0), reads as absent: the default applies.
local rate_text = ARGV[1]
local burst = tonumber(ARGV[2])
-- Plain decimal numbers only, as floodwall.core.stored reads them (tonumber would also take
-- hex and spaces, which Python does not).
local function decimal(text)
  if text and string.find(text, "^[-+]?[%d.]+[eE]?[-+]?%d*$") then
    return tonumber(text)
  end
  return nil
end
local own_rate, own_burst = decimal(state[4]), decimal(state[5])
if own_rate and own_burst
  and own_rate >= __MIN_RATE__ and own_rate <= __MAX_RATE__
  and own_burst >= __MIN_BURST__ and own_burst <= __MAX_BURST__ and own_burst % 1 == 0
  and own_burst / own_rate <= __MAX_REFILL_SECONDS__ then
  rate_text, burst = state[4], own_burst
end
local rate = tonumber(rate_text)

-- The kill-switch rule, in floodwall.core.killswitch's order; a time reads as
-- floodwall.core.stored.stored_ms reads it: a finite plain decimal number, rounded down.
local function stored_ms(text)
  local number = decimal(text)
  if number and number == number and number > -math.huge and number < math.huge then
    return math.floor(number)
  end
  return nil
end
local blocked_until = stored_ms(state[1])
if blocked_until and (blocked_until == 0 or blocked_until > now_ms) then
  -- retry_after: how long a timed block still lasts, on Redis's clock (0: no end).
  local left_us = blocked_until > 0 and (blocked_until - now_ms) * 1000 or 0
  return {2, 0, left_us, 0, rate_text, burst, blocked_until, shadow, 0, ""}
end

local issued_at = tonumber(ARGV[4])
local not_before = stored_ms(state[2])
if issued_at and not_before and issued_at < not_before then
  return {3, 0, 0, 0, rate_text, burst, 0, shadow, 0, ""}
end
if ARGV[5] ~= "" then
  local expiry = tonumber(redis.call("ZSCORE", KEYS[3], ARGV[5]))
  if expiry and expiry > now_ms then
    return {3, 0, 0, 0, rate_text, burst, 0, shadow, 0, ""}
  end
end

if state[3] == "1" and ARGV[6] ~= "1" then
  return {4, 0, 0, 0, rate_text, burst, 0, shadow, 0, ""}
end

local interval = 1000000 / rate
local capacity = burst * interval
local slack = math.min(SLACK_US, interval / 2)
local ahead = 0
local tat = tonumber(redis.call("GET", KEYS[1]))
if tat and tat > now then
  ahead = tat - now
  if ahead > capacity + slack then
    -- Only after a limit change: the old rate's debt does not carry over; the bucket is
    -- empty as of now, and refills at the new rate from now on.
    ahead = capacity
    redis.call("SET", KEYS[1], string.format("%.17g", now + ahead), "PX", expiry_ms(ahead))
  end
end
local new_ahead = ahead + tonumber(ARGV[3]) * interval
if new_ahead > capacity + slack then
  return {1, 0, math.ceil(new_ahead - capacity), math.ceil(ahead), rate_text, burst, 0, shadow, 0, ""}
end

-- Each window admits at most `limit` requests in any `period`: the request passes when
-- fewer than `limit` were admitted in the period up to now.
local counted = {}
for i = 1, windows do
  local key = KEYS[4 + i]
  local limit = tonumber(ARGV[7 + 3 * i])
  local period = tonumber(ARGV[8 + 3 * i])
  local own = state[7 + i]
  if own then
    local own_limit, own_period = string.match(own, "^(%d+):(%d+)$")
    if own_limit then
      limit, period = tonumber(own_limit), tonumber(own_period)
    end
  end
  -- The list holds the times of the last `limit` admitted requests, newest first, so the
  -- request passes when the limit-th newest is older than the period (or there is none):
  -- one O(1) read, and a window never holds more than its limit.
  local oldest = tonumber(redis.call("LINDEX", key, limit - 1))
  if oldest and oldest > now - period then
    local wait = math.max(1, math.ceil(oldest + period - now))
    local per_second = string.format("%.17g", limit * 1000000 / period)
    return {1, 0, wait, wait, per_second, limit, 0, shadow, i, ""}
  end
  counted[i] = {key, limit, period, oldest}
end

-- A slot of the subject's requests in flight: leases that ended were a crashed worker's.
local concurrency = tonumber(state[7] or ARGV[8])
local in_flight
if concurrency then
  redis.call("ZREMRANGEBYSCORE", KEYS[4], "-inf", now_ms)
  in_flight = redis.call("ZCARD", KEYS[4])
  if in_flight >= concurrency then
    return {8, 0, 1000000, 1000000, rate_text, burst, 0, shadow, 0, ""}
  end
end

-- The key lives exactly until the bucket is full again, so idle subjects cost no memory.
redis.call("SET", KEYS[1], string.format("%.17g", now + new_ahead), "PX", expiry_ms(new_ahead))
local now_text = string.format("%d", now)
for i = 1, windows do
  local key, limit, period, full = unpack(counted[i])
  redis.call("LPUSH", key, now_text)
  if full then
    -- Keeps the last `limit` (a lowered limit trims the rest).
    redis.call("LTRIM", key, 0, limit - 1)
  end
  redis.call("PEXPIRE", key, expiry_ms(period))
end
local lease = ""
if concurrency then
  -- A member no slot of the subject has (NX): requests of one µs differ by their count.
  local lease_ms = tonumber(ARGV[9])
  repeat
    lease = string.format("%d:%d", now, in_flight)
    in_flight = in_flight + 1
  until redis.call("ZADD", KEYS[4], "NX", now_ms + lease_ms, lease) == 1
  redis.call("PEXPIRE", KEYS[4], string.format("%d", lease_ms + keep_ms))
end
-- Counted by the admission rule above, slack included: the requests that would still pass.
local remaining = math.floor((capacity + slack - new_ahead) / interval)
if remaining < 0 then
  remaining = 0
end
return {0, remaining, 0, math.ceil(new_ahead), rate_text, burst, 0, shadow, 0, lease}
