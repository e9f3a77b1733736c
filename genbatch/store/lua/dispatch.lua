-- include: common
-- DISPATCH: move up to N pending items of one (account, batch) queue to `dispatched`,
-- within the account's in-flight limit and the batch's budget.
-- Budget: each dispatched item reserves its estimate (`est_cost`, 0 when unpriced) on the
-- batch. With `budget_usd` set, an item whose estimate would take spent + reserved past it
-- goes back to the head of the list, the batch gets `budget_exhausted` and leaves this
-- account's round-robin (raising the budget puts it back: raise_budget.lua).
-- KEYS: pending list, timers ZSET.
-- ARGV: prefix, provider, limit, max_n, timer score.
-- Returns: the dispatched item ids.

local pending, timers = KEYS[1], KEYS[2]
local prefix, provider = ARGV[1], ARGV[2]
local limit, max_n, score = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local inflight = tonumber(redis.call('GET', prefix .. 'inflight:' .. provider) or '0')
local free = limit - inflight
if free > max_n then free = max_n end
local out = {}
while free > 0 do
  local id = redis.call('LPOP', pending)
  if not id then break end
  local item_key = prefix .. 'item:' .. id
  local f = redis.call('HMGET', item_key, 'state', 'batch', 'est_cost')
  local batch_key = prefix .. 'batch:' .. (f[2] or '')
  local est = micro(f[3])
  local b = redis.call('HMGET', batch_key, 'budget_usd', 'spent_micro', 'reserved_micro',
                       'budget_exhausted')
  if f[1] == S.pending and redis.call('HEXISTS', batch_key, 'cancel_requested') == 1 then
    -- A cancelled batch dispatches nothing, not even items requeued after a 429.
    move(item_key, batch_key, prefix .. 'inflight:', S.pending, S.cancelled, provider)
    redis.call('HSET', item_key, 'error_code', 'cancelled',
               'error_message', 'the batch was cancelled before this item was submitted')
  elseif f[1] == S.pending and b[1] and b[1] ~= ''
      and (tonumber(b[2]) or 0) + (tonumber(b[3]) or 0) + est > micro(b[1]) then
    redis.call('LPUSH', pending, id)
    local t = redis.call('TIME')
    redis.call('HSET', batch_key, 'budget_exhausted', string.format('%d.%06d', t[1], t[2]))
    redis.call('SREM', prefix .. 'queues:' .. provider, f[2])
    break
  elseif f[1] == S.pending then
    if b[4] then redis.call('HDEL', batch_key, 'budget_exhausted') end
    redis.call('HINCRBY', batch_key, 'reserved_micro', int(est))
    redis.call('HSET', item_key, 'reserved_micro', int(est))
    move(item_key, batch_key, prefix .. 'inflight:', S.pending, S.dispatched,
         provider)
    redis.call('ZADD', timers, score, id)
    out[#out + 1] = id
    free = free - 1
  end
end
return out
