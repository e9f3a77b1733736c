-- include: states
-- Helpers of the dispatch queues (prepended by scripts.load to the scripts that include
-- `queues`). A provider's batches with pending items are the set `queues:{provider}` and,
-- for the dispatcher's round-robin, one list per priority `ring:{provider}:{priority}`
-- holding the same batch ids: the dispatcher serves the head and moves it to the tail, so
-- a call costs what it dispatches, not the number of batches waiting. Both change only
-- through these two helpers and dispatch.lua (which takes an emptied batch, its ring's
-- head, off both), so the set and the rings always hold the same ids.
-- KEYS: none of its own (the helpers derive their keys from the prefix).
-- ARGV: none of its own.
-- Returns: nothing: it only defines local functions for the script it is prepended to.

local function ring_of(prefix, provider, bid)
  local prio = redis.call('HGET', prefix .. 'batch:' .. bid, 'priority')
  if not PRIORITY[prio] then prio = 'normal' end
  return prefix .. 'ring:' .. provider .. ':' .. prio
end

local function queue_batch(prefix, provider, bid)
  if redis.call('SADD', prefix .. 'queues:' .. provider, bid) == 1 then
    redis.call('RPUSH', ring_of(prefix, provider, bid), bid)
  end
end

local function unqueue_batch(prefix, provider, bid)
  if redis.call('SREM', prefix .. 'queues:' .. provider, bid) == 1 then
    redis.call('LREM', ring_of(prefix, provider, bid), 1, bid)
  end
end
