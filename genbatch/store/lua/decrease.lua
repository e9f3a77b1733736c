-- include: window
-- DECREASE: multiplicative decrease after a 429. At most one cut per `hold` seconds (a
-- burst of 429s answers one overload); the bucket also grants nothing for `pause` seconds.
-- KEYS: bucket.
-- ARGV: now, beta, min_f, hold, recover_s, pause.
-- Returns: the new factor.

local now, beta, min_f = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local hold, recover_s, pause = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'f', 'fts', 'dec', 'pause')
local f = factor(h[1], h[2], now, recover_s)
local last = tonumber(h[3]) or -1e18
if now - last >= hold then
  f = math.max(min_f, f * beta)
  redis.call('HSET', KEYS[1], 'dec', num(now))
end
local until_ = tonumber(h[4]) or now
if until_ < now + pause then until_ = now + pause end
redis.call('HSET', KEYS[1], 'f', num(f), 'fts', num(now), 'pause', num(until_))
redis.call('EXPIRE', KEYS[1], 86400)
return num(f)
