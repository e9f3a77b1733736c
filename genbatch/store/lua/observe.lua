-- OBSERVE: learned generation time per (provider, model): a mean in the hash `gentime`, in
-- unscaled seconds. The first 1/alpha samples are averaged plainly, then exponentially
-- weighted: the first tasks seen done are a wave's fastest, and weighted at alpha from the
-- first one on they held the mean low (14 s for 20 s generations) long after the wave.
-- KEYS: gentime, gentime:n (how many samples each mean has seen).
-- ARGV: field, seconds, alpha.
-- Returns: the new mean.

local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local x, a = tonumber(ARGV[2]), math.max(tonumber(ARGV[3]), 1 / n)
if cur then x = cur + a * (x - cur) end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.17g', x))
return string.format('%.17g', x)
