-- include: common, queues
-- TRANSITION: compare-and-set of one item's state. Every state change of an item goes
-- through here: it compares the current state, moves the batch counters and the in-flight
-- counts of the item's account (its `account`, set at dispatch) in the same step, and sets
-- the item's timer, so counters can never drift from the item records.
-- KEYS: item, timers ZSET.
-- ARGV: item_id, key prefix, allowed states (comma separated, '*' = any non-terminal),
--       new state, timer ('' keep, '-' remove, else a score), n, field1, value1, ...,
--       then incr-field pairs: m, field1, delta1, ... (a field named 'batch:<name>' counts
--       on the item's batch instead, 'hosts:<name>' on the batch's `hosts:{bid}` hash of
--       work done per host), then queue ('' none, 'front' or
--       'back': with new state 'pending', push the item onto its provider's pending list
--       of its batch (any account of the provider may take it), in the same step, so a
--       crash cannot leave it pending on no queue).
-- Returns: {1, old_state, open_count, provider, account} on success (the provider and
-- account the item was at before `fields` applied: the one whose slot a move out of flight
-- frees), {0,
-- current_state, -1} when the state did not match, {-1, '', -1} when the item does not exist.

local item_key, timers = KEYS[1], KEYS[2]
local item_id, prefix, allowed, new, timer = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local fields = redis.call('HMGET', item_key, 'state', 'batch', 'provider', 'account', 'model')
local cur, batch, provider = fields[1], fields[2], fields[3]
local account = account_of(fields[4], provider)
if not cur then return {-1, '', -1} end
local ok = false
if allowed == '*' then
  ok = not TERMINAL[cur]
else
  for s in string.gmatch(allowed, '([^,]+)') do if s == cur then ok = true end end
end
if not ok then return {0, cur, -1} end
local batch_key = prefix .. 'batch:' .. batch
move(item_key, batch_key, prefix .. 'inflight:', cur, new, account, fields[5])
local n = tonumber(ARGV[6])
local i = 7
for _ = 1, n do
  redis.call('HSET', item_key, ARGV[i], ARGV[i + 1])
  i = i + 2
end
local m = tonumber(ARGV[i])
i = i + 1
for _ = 1, m do
  if string.sub(ARGV[i], 1, 6) == 'batch:' then  -- a counter on the item's batch
    redis.call('HINCRBY', batch_key, string.sub(ARGV[i], 7), tonumber(ARGV[i + 1]))
  elseif string.sub(ARGV[i], 1, 6) == 'hosts:' then  -- work done per host (batches.py)
    redis.call('HINCRBY', prefix .. 'hosts:' .. batch, string.sub(ARGV[i], 7),
               tonumber(ARGV[i + 1]))
  else
    redis.call('HINCRBY', item_key, ARGV[i], tonumber(ARGV[i + 1]))
  end
  i = i + 2
end
if timer == '-' then
  redis.call('ZREM', timers, item_id)
elseif timer ~= '' then
  redis.call('ZADD', timers, tonumber(timer), item_id)
end
local queue = ARGV[i] or ''
if queue ~= '' and new == S.pending then
  local target = redis.call('HGET', item_key, 'provider')  -- may have just been set
  local list = prefix .. 'pending:' .. target .. ':' .. batch
  if queue == 'front' then
    redis.call('LPUSH', list, item_id)
  else
    redis.call('RPUSH', list, item_id)
  end
  queue_batch(prefix, target, batch)
end
settle(item_key, batch_key, cur, new)  -- after the fields: a retry has cleared `cost`
return {1, cur, open_count(batch_key), provider or '', account}
