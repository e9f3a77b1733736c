-- SAMPLE: one sample of a batch's counters into its bounded series (store/series.py).
-- KEYS: series:{bid}, batch:{bid}, metrics:batch:{bid}.
-- ARGV: now, min_step, cap, counter names of the batch hash (all but rate_limited).
-- Returns: 1 when a sample was written or replaced, 0 when it was too soon.

local function time_of(point) return tonumber(string.match(point, '^%S+')) end
local counts = redis.call('HMGET', KEYS[2], unpack(ARGV, 4))
local parts = { ARGV[1] }
for i = 1, #counts do parts[#parts + 1] = tostring(tonumber(counts[i]) or 0) end
parts[#parts + 1] = tostring(tonumber(redis.call('HGET', KEYS[3], 'rate_limited')) or 0)
local point = table.concat(parts, ' ')
local t, cap = tonumber(ARGV[1]), tonumber(ARGV[3])
local n = redis.call('LLEN', KEYS[1])
if n > 0 then
  local first = time_of(redis.call('LINDEX', KEYS[1], 0))
  local step = math.max(tonumber(ARGV[2]), (t - first) / (cap / 2))
  local last = time_of(redis.call('LINDEX', KEYS[1], -1))
  if n == 1 then
    if t - first < step then return 0 end
  elseif last - time_of(redis.call('LINDEX', KEYS[1], -2)) < step then
    redis.call('LSET', KEYS[1], -1, point)  -- the newest sample is provisional
    return 1
  end
end
redis.call('RPUSH', KEYS[1], point)
n = n + 1
if n > cap then
  local all = redis.call('LRANGE', KEYS[1], 0, -1)
  local kept = {}
  for i = 1, n do
    if i % 2 == 1 or i == n then kept[#kept + 1] = all[i] end
  end
  redis.call('DEL', KEYS[1])
  redis.call('RPUSH', KEYS[1], unpack(kept))
end
return 1
