-- BATCH_STATUS: compare-and-set of a batch's status.
-- KEYS: batch.
-- ARGV: allowed (comma separated), new, n, field1, value1, ...
-- Returns: {1, old} when set, {0, current} when the status did not match, {-1, ''} when
-- the batch does not exist.

local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {-1, ''} end
local ok = false
for s in string.gmatch(ARGV[1], '([^,]+)') do if s == cur then ok = true end end
if not ok then return {0, cur} end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return {1, cur}
