-- REFUND: give back m unused grants (the newest ones), and their share of the spacing
-- after a 429 (`take` never lets `nxt` lag behind `now`).
-- KEYS: bucket.
-- ARGV: m.
-- Returns: 1.

local m = tonumber(ARGV[1])
redis.call('ZPOPMAX', KEYS[1] .. ':log', m)
local h = redis.call('HMGET', KEYS[1], 'nxt', 'iv')
if h[1] and h[2] then
  redis.call('HSET', KEYS[1], 'nxt', string.format('%.17g', tonumber(h[1]) - m * tonumber(h[2])))
end
return 1
