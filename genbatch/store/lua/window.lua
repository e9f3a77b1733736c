-- Helpers of the request-rate buckets (store/limits.py describes the algorithm), prepended
-- by scripts.load to the scripts that include `window`: the AIMD factor and `take`.
-- A bucket's settings travel as rpm, period, recover_s, tolerance.
-- KEYS: none of its own (`take` is given its bucket's key).
-- ARGV: none of its own (the including script passes `now` and the settings).
-- Returns: nothing: it only defines local functions for the script it is prepended to.
-- (`take` and `refund` are the bucket's two operations.)

local MARGIN = 1.01
local function num(x) return string.format('%.17g', x) end

local function factor(h_f, h_fts, now, recover_s)
  local f = tonumber(h_f) or 1
  local ts = tonumber(h_fts) or now
  if f < 1 and now > ts then f = math.min(1, f + (now - ts) / recover_s) end
  return f
end

-- Take up to n grants from bucket `key` at `now`; returns granted, wait-until-next.
local function take(key, now, n, rpm, period, recover_s, tolerance)
  local log = key .. ':log'
  local window = period * MARGIN
  local h = redis.call('HMGET', key, 'f', 'fts', 'pause', 'nxt')
  local f = factor(h[1], h[2], now, recover_s)
  local limit = math.max(1, math.floor(rpm * f + 1e-9))
  local pause = tonumber(h[3]) or 0
  redis.call('ZREMRANGEBYSCORE', log, '-inf', num(now - window))
  local used = redis.call('ZCARD', log)
  local k, wait = 0, 0
  if now < pause then
    wait = pause - now
  else
    k = math.max(0, math.min(n, limit - used))
    if f < 1 then
      -- After a 429, until the rate has recovered, grants are also spaced evenly: a GCRA
      -- of one per window / (rpm * f) with `tolerance` seconds of slack (the dispatcher
      -- hands grants out once per scheduler tick). A provider that objected to a burst
      -- does not get another.
      local iv = window / (rpm * f)
      local tat = math.max(tonumber(h[4]) or now, now)
      local fit = 0
      if tat - now <= tolerance then fit = math.floor((now + tolerance - tat) / iv) + 1 end
      if k > fit then k = fit end
      tat = tat + k * iv
      redis.call('HSET', key, 'nxt', num(tat), 'iv', num(iv))
      wait = math.max(0, tat - tolerance - now)
    end
    if k > 0 then
      local seq = redis.call('HINCRBY', key, 'seq', k)
      local args = {}
      for i = 1, k do
        args[#args + 1] = num(now)
        args[#args + 1] = tostring(seq - k + i)
      end
      redis.call('ZADD', log, unpack(args))
    end
    if used + k >= limit then  -- full: the next grant waits for the oldest surplus to age out
      local e = redis.call('ZRANGE', log, used + k - limit, used + k - limit, 'WITHSCORES')
      if e[2] then wait = math.max(wait, tonumber(e[2]) + window - now) end
    end
  end
  redis.call('HSET', key, 'f', num(f), 'fts', num(now))
  redis.call('EXPIRE', key, 86400)
  redis.call('PEXPIRE', log, math.ceil(window * 1000) + 1000)
  return k, wait
end

-- Give back the m newest grants of bucket `key`, unused, and their share of the spacing
-- after a 429 (`take` never lets `nxt` lag behind `now`).
local function refund(key, m)
  if m <= 0 then return end
  redis.call('ZPOPMAX', key .. ':log', m)
  local h = redis.call('HMGET', key, 'nxt', 'iv')
  if h[1] and h[2] then
    redis.call('HSET', key, 'nxt', num(tonumber(h[1]) - m * tonumber(h[2])))
  end
end
