"""Lua scripts of the job store. Each runs atomically inside Redis.

Every state change of an item goes through TRANSITION, which compares the current state,
moves the batch counters and the account's in-flight count in the same step, and sets the
item's timer. Counters therefore can never drift from the item records.

The scripts touch keys derived from item fields (the item's batch hash), so they assume a
single Redis (or one hash slot), not a Redis Cluster.
"""

from __future__ import annotations

# Shared Lua helpers: which batch counter a state is counted in, and whether it holds an
# in-flight slot at the provider account.
_COMMON = """
local COUNTER = {
  pending = 'pending', dispatched = 'in_flight', submitting = 'in_flight',
  submitted = 'in_flight', downloading = 'downloading', succeeded = 'succeeded',
  failed = 'failed', expired = 'expired', cancelled = 'cancelled', ambiguous = 'ambiguous'
}
local INFLIGHT = { dispatched = true, submitting = true, submitted = true }
local OPEN = { 'pending', 'in_flight', 'downloading' }
local TERMINAL = { succeeded = true, failed = true, expired = true, cancelled = true,
                   ambiguous = true }

-- Money is counted in integer micro-dollars (exact, HINCRBY): `reserved_micro` (estimates
-- of items dispatched and not yet settled) and `spent_micro` (what the provider billed, as
-- far as we know) on the batch, `reserved_micro` on the item.
local function micro(usd)
  local x = tonumber(usd)
  if not x then return 0 end
  return math.floor(x * 1000000 + 0.5)
end

local function int(n) return string.format('%d', n) end

-- An attempt ends (the item goes back to pending or to a terminal state): release its
-- reservation; count as spent the cost of a generation the provider finished (`cost` is
-- set when the poll says succeeded, even if the download then fails), and the whole
-- reservation of an `ambiguous` submit (it may have been billed).
local function settle(item_key, batch_key, cur, new)
  if cur == new or TERMINAL[cur] or not (TERMINAL[new] or new == 'pending') then return end
  local f = redis.call('HMGET', item_key, 'reserved_micro', 'cost', 'est_cost')
  local held = tonumber(f[1]) or 0
  local spent, est = 0, 0
  if new == 'ambiguous' then
    spent, est = held, held
  elseif f[2] and f[2] ~= '' then
    spent, est = micro(f[2]), micro(f[3])
  end
  if held ~= 0 then
    redis.call('HINCRBY', batch_key, 'reserved_micro', int(-held))
    redis.call('HSET', item_key, 'reserved_micro', '0')
  end
  if spent ~= 0 or est ~= 0 then
    redis.call('HINCRBY', batch_key, 'spent_micro', int(spent))
    redis.call('HINCRBY', batch_key, 'spent_est_micro', int(est))
  end
end

local function open_count(batch_key)
  local vals = redis.call('HMGET', batch_key, OPEN[1], OPEN[2], OPEN[3])
  local n = 0
  for _, v in ipairs(vals) do n = n + (tonumber(v) or 0) end
  return n
end

local function move(item_key, batch_key, inflight_prefix, cur, new, provider)
  if cur == new then return end
  redis.call('HINCRBY', batch_key, COUNTER[cur], -1)
  redis.call('HINCRBY', batch_key, COUNTER[new], 1)
  if INFLIGHT[cur] and not INFLIGHT[new] then
    redis.call('DECR', inflight_prefix .. provider)
  elseif INFLIGHT[new] and not INFLIGHT[cur] then
    redis.call('INCR', inflight_prefix .. provider)
  end
  redis.call('HSET', item_key, 'state', new)
end
"""

# KEYS: item, timers ZSET.
# ARGV: item_id, key prefix, allowed states (comma separated, '*' = any non-terminal),
#       new state, timer ('' keep, '-' remove, else a score), n, field1, value1, ...,
#       then incr-field pairs: m, field1, delta1, ... (a field named 'batch:<name>' counts
#       on the item's batch instead), then queue ('' none, 'front' or
#       'back': with new state 'pending', push the item onto its account's pending list
#       of its batch, in the same step, so a crash cannot leave it pending on no queue).
# Returns {1, old_state, open_count, provider} on success (the account the item was at
# before `fields` applied: the one whose slot a move out of flight frees), {0,
# current_state, -1} when the state did not match, {-1, '', -1} when the item does not exist.
TRANSITION = _COMMON + """
local item_key, timers = KEYS[1], KEYS[2]
local item_id, prefix, allowed, new, timer = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local fields = redis.call('HMGET', item_key, 'state', 'batch', 'provider')
local cur, batch, provider = fields[1], fields[2], fields[3]
if not cur then return {-1, '', -1} end
local ok = false
if allowed == '*' then
  ok = (cur ~= 'succeeded' and cur ~= 'failed' and cur ~= 'expired'
        and cur ~= 'cancelled' and cur ~= 'ambiguous')
else
  for s in string.gmatch(allowed, '([^,]+)') do if s == cur then ok = true end end
end
if not ok then return {0, cur, -1} end
local batch_key = prefix .. 'batch:' .. batch
move(item_key, batch_key, prefix .. 'inflight:', cur, new, provider)
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
if queue ~= '' and new == 'pending' then
  local account = redis.call('HGET', item_key, 'provider')  -- may have just been set
  local list = prefix .. 'pending:' .. account .. ':' .. batch
  if queue == 'front' then
    redis.call('LPUSH', list, item_id)
  else
    redis.call('RPUSH', list, item_id)
  end
  redis.call('SADD', prefix .. 'queues:' .. account, batch)
end
settle(item_key, batch_key, cur, new)  -- after the fields: a retry has cleared `cost`
return {1, cur, open_count(batch_key), provider or ''}
"""

# Move up to N pending items of one (account, batch) queue to `dispatched`, within the
# account's in-flight limit and the batch's budget. KEYS: pending list, timers. ARGV:
# prefix, provider, limit, max_n, timer score. Returns the dispatched item ids.
# Budget: each dispatched item reserves its estimate (`est_cost`, 0 when unpriced) on the
# batch. With `budget_usd` set, an item whose estimate would take spent + reserved past it
# goes back to the head of the list, the batch gets `budget_exhausted` and leaves this
# account's round-robin (raising the budget puts it back: RAISE_BUDGET).
DISPATCH = _COMMON + """
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
  if f[1] == 'pending' and redis.call('HEXISTS', batch_key, 'cancel_requested') == 1 then
    -- A cancelled batch dispatches nothing, not even items requeued after a 429.
    move(item_key, batch_key, prefix .. 'inflight:', 'pending', 'cancelled', provider)
    redis.call('HSET', item_key, 'error_code', 'cancelled',
               'error_message', 'the batch was cancelled before this item was submitted')
  elseif f[1] == 'pending' and b[1] and b[1] ~= ''
      and (tonumber(b[2]) or 0) + (tonumber(b[3]) or 0) + est > micro(b[1]) then
    redis.call('LPUSH', pending, id)
    local t = redis.call('TIME')
    redis.call('HSET', batch_key, 'budget_exhausted', string.format('%d.%06d', t[1], t[2]))
    redis.call('SREM', prefix .. 'queues:' .. provider, f[2])
    break
  elseif f[1] == 'pending' then
    if b[4] then redis.call('HDEL', batch_key, 'budget_exhausted') end
    redis.call('HINCRBY', batch_key, 'reserved_micro', int(est))
    redis.call('HSET', item_key, 'reserved_micro', int(est))
    move(item_key, batch_key, prefix .. 'inflight:', 'pending', 'dispatched',
         provider)
    redis.call('ZADD', timers, score, id)
    out[#out + 1] = id
    free = free - 1
  end
end
return out
"""

# Set a batch's budget (raise it to continue a batch stopped by its budget). KEYS: batch.
# ARGV: prefix, batch id, budget (USD), providers... Refused ({0, spent, reserved}) when the
# new budget is below what is already spent plus reserved; else clears `budget_exhausted`
# and puts the batch back on the round-robin of every account where it has pending items
# (not for a cancelled batch). Returns {1, spent, reserved}, {-1, 0, 0} for no batch.
RAISE_BUDGET = _COMMON + """
local batch_key, prefix, bid = KEYS[1], ARGV[1], ARGV[2]
local b = redis.call('HMGET', batch_key, 'status', 'spent_micro', 'reserved_micro',
                     'cancel_requested')
if not b[1] then return {-1, 0, 0} end
local spent, reserved = tonumber(b[2]) or 0, tonumber(b[3]) or 0
if micro(ARGV[3]) < spent + reserved then return {0, spent, reserved} end
redis.call('HSET', batch_key, 'budget_usd', ARGV[3])
redis.call('HDEL', batch_key, 'budget_exhausted')
if not b[4] and b[1] ~= 'validating' then
  for i = 4, #ARGV do
    if redis.call('LLEN', prefix .. 'pending:' .. ARGV[i] .. ':' .. bid) > 0 then
      redis.call('SADD', prefix .. 'queues:' .. ARGV[i], bid)
    end
  end
end
return {1, spent, reserved}
"""

# Continue a batch stopped by its budget once released reservations (items that failed
# unbilled) leave room again: for each account with pending items of the batch, if the item
# at the head of its queue fits (spent + reserved + its estimate <= budget), put the batch
# back on that account's round-robin; clears `budget_exhausted` if any did. KEYS: batch.
# ARGV: prefix, batch id, providers... Returns how many accounts it re-queued.
RESUME_IF_ROOM = _COMMON + """
local batch_key, prefix, bid = KEYS[1], ARGV[1], ARGV[2]
local b = redis.call('HMGET', batch_key, 'status', 'budget_usd', 'spent_micro',
                     'reserved_micro', 'budget_exhausted', 'cancel_requested')
if b[1] ~= 'in_progress' or not b[2] or b[2] == '' or not b[5] or b[6] then return 0 end
local room = micro(b[2]) - (tonumber(b[3]) or 0) - (tonumber(b[4]) or 0)
local n = 0
for i = 3, #ARGV do
  local head = redis.call('LINDEX', prefix .. 'pending:' .. ARGV[i] .. ':' .. bid, 0)
  if head and micro(redis.call('HGET', prefix .. 'item:' .. head, 'est_cost')) <= room then
    redis.call('SADD', prefix .. 'queues:' .. ARGV[i], bid)
    n = n + 1
  end
end
if n > 0 then redis.call('HDEL', batch_key, 'budget_exhausted') end
return n
"""

# Batch status compare-and-set. KEYS: batch. ARGV: allowed (comma separated), new,
# n, field1, value1, ... Returns {1, old} or {0, current}.
BATCH_STATUS = """
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
"""

# Leader lock renewal: extend only if we still own it. KEYS: lock. ARGV: token, ttl_ms.
RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Writes a chunk of new item records of a batch in one call. ARGV[4] and ARGV[5] are
# strings of length-prefixed tokens (`<bytes>:<value>`), parsed with string.find/sub:
# cheaper inside Redis than cjson-decoding records whose values are themselves JSON.
# ARGV[4] lists the chunk's field-name lists (schemas): n, then n names, per schema.
# ARGV[5] holds the records: check id, line, schema number k, then one value per field
# of schema k (each schema has seq, state and provider); k = 0 is a check-only entry (a
# row that is validated but not written).
# With ARGV[3] (a temporary hash custom_id -> first line, deleted at commit/discard) each
# non-empty check id is made unique per batch: a repeated one turns its record into a
# failed `invalid_row` item (never a pending one) and is returned. Pending ids go onto their
# per-account lists in manifest order (for a batch already running, its account queues
# are marked too). KEYS[1] batch hash; ARGV[1] key prefix, ARGV[2] batch id, ARGV[3] ids
# hash key or ''. Returns {seq or '', line, check id, first line, ...} per duplicate.
ADD_ITEMS = """
local prefix, bid, ids, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('BATCHGONE batch ' .. bid .. ' no longer exists')
end
local find, sub = string.find, string.sub
local pos, size = 1, #data
local function token()
  local colon = find(data, ':', pos, true)
  local stop = colon + tonumber(sub(data, pos, colon - 1))
  local value = sub(data, colon + 1, stop)
  pos = stop + 1
  return value
end
local schemas = {}
while pos <= size do
  local names = {}
  for j = 1, tonumber(token()) do names[j] = token() end
  schemas[#schemas + 1] = names
end
data, pos = ARGV[5], 1
size = #data
local pending, order, counts, dups = {}, {}, {}, {}
local written = 0
while pos <= size do
  local check, line, k = token(), token(), tonumber(token())
  local dup = nil
  if ids ~= '' and check ~= '' then
    if redis.call('HSETNX', ids, check, line) == 0 then
      dup = redis.call('HGET', ids, check)
    end
  end
  if k > 0 then
    local names = schemas[k]
    local args = {'batch', bid}
    local seq, state, provider, state_at
    for j = 1, #names do
      local f, v = names[j], token()
      args[#args + 1] = f
      args[#args + 1] = v
      if f == 'seq' then seq = v
      elseif f == 'state' then state, state_at = v, #args
      elseif f == 'provider' then provider = v end
    end
    if dup then
      state = 'failed'
      args[state_at] = state
      args[#args + 1] = 'error_code'
      args[#args + 1] = 'invalid_row'
      args[#args + 1] = 'error_message'
      args[#args + 1] = 'custom_id: duplicate custom_id'  -- exact text set by the caller
    end
    local iid = bid .. ':' .. seq
    redis.call('HSET', prefix .. 'item:' .. iid, unpack(args))
    written = written + 1
    counts[state] = (counts[state] or 0) + 1
    if state == 'pending' then
      local list = pending[provider]
      if not list then
        list = {}
        pending[provider] = list
        order[#order + 1] = provider
      end
      list[#list + 1] = iid
    end
    if dup then dups[#dups + 1] = seq end
  elseif dup then
    dups[#dups + 1] = ''
  end
  if dup then
    dups[#dups + 1] = line
    dups[#dups + 1] = check
    dups[#dups + 1] = dup
  end
end
local live = redis.call('HGET', KEYS[1], 'status') ~= 'validating'
for _, p in ipairs(order) do
  local list = pending[p]
  for i = 1, #list, 500 do
    redis.call('RPUSH', prefix .. 'pending:' .. p .. ':' .. bid,
               unpack(list, i, math.min(i + 499, #list)))
  end
  if live then  -- items added to a running batch (submit --resume) are dispatchable now
    redis.call('SADD', prefix .. 'queues:' .. p, bid)
  end
end
if written > 0 then
  redis.call('HINCRBY', KEYS[1], 'total', written)
end
for state, k in pairs(counts) do
  redis.call('HINCRBY', KEYS[1], state, k)
end
-- The producer's heartbeat: a `validating` batch not touched for a while is one whose
-- producer died; the scheduler's sweep discards it (JobStore.reap_validating).
redis.call('HSET', KEYS[1], 'touched', redis.call('TIME')[1])
return dups
"""
