-- OBSERVE: learned generation time per (provider, model): an exponentially weighted
-- mean in the hash `gentime`, in unscaled seconds.
-- KEYS: gentime.
-- ARGV: field, seconds, alpha.
-- Returns: the new mean.

local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local x, a = tonumber(ARGV[2]), tonumber(ARGV[3])
if cur then x = cur + a * (x - cur) end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.17g', x))
return string.format('%.17g', x)
