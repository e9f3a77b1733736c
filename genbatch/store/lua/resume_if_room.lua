-- include: common, queues
-- RESUME_IF_ROOM: continue a batch stopped by its budget once released reservations (items
-- that failed unbilled) leave room again: for each account with pending items of the
-- batch, if the item at the head of its queue fits (spent + reserved + its estimate <=
-- budget), put the batch back on that account's round-robin; clears `budget_exhausted` if
-- any did.
-- KEYS: batch.
-- ARGV: prefix, batch id, providers...
-- Returns: how many accounts it re-queued.

local batch_key, prefix, bid = KEYS[1], ARGV[1], ARGV[2]
local b = redis.call('HMGET', batch_key, 'status', 'budget_usd', 'spent_micro',
                     'reserved_micro', 'budget_exhausted', 'cancel_requested')
if b[1] ~= B.in_progress or not b[2] or b[2] == '' or not b[5] or b[6] then return 0 end
local room = micro(b[2]) - (tonumber(b[3]) or 0) - (tonumber(b[4]) or 0)
local n = 0
for i = 3, #ARGV do
  local head = redis.call('LINDEX', prefix .. 'pending:' .. ARGV[i] .. ':' .. bid, 0)
  if head and micro(redis.call('HGET', prefix .. 'item:' .. head, 'est_cost')) <= room then
    queue_batch(prefix, ARGV[i], bid)
    n = n + 1
  end
end
if n > 0 then redis.call('HDEL', batch_key, 'budget_exhausted') end
return n
