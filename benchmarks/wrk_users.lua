-- wrk script of the floodwall benchmarks: every request carries an `x-user` header.
--
-- BENCH_USERS       size of the rotating pool of users "user-0" .. "user-<N-1>" (default 1000)
-- BENCH_FIXED_USER  send every request as this one user instead (the drill's attacker)
-- BENCH_USER_PREFIX name of the rotating users, "<prefix>0" .. (default "user-")
-- BENCH_DELAY_MS    wait this long before each request of a connection (default none): the
--                   drill's accounts that stay under their rate limit
-- BENCH_COUNT_STATUS=1  count responses by status code (costs wrk a Lua call per response)
--
-- At the end it prints one line `WRKJSON {...}` with the totals, errors, latency
-- percentiles (µs) and the status counts, which the Python side parses.

local pool = tonumber(os.getenv("BENCH_USERS") or "1000")
local fixed = os.getenv("BENCH_FIXED_USER")
if fixed == "" then
  fixed = nil
end
local prefix = os.getenv("BENCH_USER_PREFIX") or "user-"
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  -- Threads start at different places in the pool.
  counter = (id or 0) * 7919
  statuses = {}
end

function request()
  counter = counter + 1
  local user = fixed or (prefix .. (counter % pool))
  return wrk.format(nil, nil, { ["x-user"] = user })
end

if pause then
  function delay()
    return pause
  end
end

if os.getenv("BENCH_COUNT_STATUS") == "1" then
  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    if counts then
      for code, n in pairs(counts) do
        merged[code] = (merged[code] or 0) + n
      end
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "stdev": %.1f, "min": %d, "p50": %d, "p75": %d, ' ..
    '"p90": %d, "p99": %d, "p99.9": %d, "max": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    table.concat(parts, ", ")))
end
