-- include: common, queues
-- RAISE_BUDGET: set a batch's budget (raise it to continue a batch stopped by its budget).
-- Refused when the new budget is below what is already spent plus reserved; else clears
-- `budget_exhausted` and puts the batch back on the round-robin of every account where it
-- has pending items (not for a cancelled batch, nor one still `validating`).
-- KEYS: batch.
-- ARGV: prefix, batch id, budget (USD), providers...
-- Returns: {1, spent, reserved} when set, {0, spent, reserved} when refused, {-1, 0, 0}
-- for no batch (money in micro-USD).

local batch_key, prefix, bid = KEYS[1], ARGV[1], ARGV[2]
local b = redis.call('HMGET', batch_key, 'status', 'spent_micro', 'reserved_micro',
                     'cancel_requested')
if not b[1] then return {-1, 0, 0} end
local spent, reserved = tonumber(b[2]) or 0, tonumber(b[3]) or 0
if micro(ARGV[3]) < spent + reserved then return {0, spent, reserved} end
redis.call('HSET', batch_key, 'budget_usd', ARGV[3])
redis.call('HDEL', batch_key, 'budget_exhausted')
if not b[4] and b[1] ~= B.validating then
  for i = 4, #ARGV do
    if redis.call('LLEN', prefix .. 'pending:' .. ARGV[i] .. ':' .. bid) > 0 then
      queue_batch(prefix, ARGV[i], bid)
    end
  end
end
return {1, spent, reserved}
