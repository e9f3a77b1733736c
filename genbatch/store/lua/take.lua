-- include: window
-- TAKE: up to n grants from one bucket now.
-- KEYS: bucket.
-- ARGV: now, n, rpm, period, recover_s, tolerance.
-- Returns: {granted, seconds until the next grant}.

local k, wait = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                     tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
return {k, num(wait)}
