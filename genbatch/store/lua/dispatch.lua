-- include: common, window
-- DISPATCH: move pending items of one provider to `dispatched`, each at one of the
-- provider's accounts, within every account's in-flight cap and submit rate, the per-model
-- caps and rates of the account, and each batch's budget.
-- Order: priority first (PRIORITIES), then round-robin over the batches of a priority: the
-- batch at the head of `ring:{provider}:{priority}` gives its share (the items left to hand
-- out at the start of a round divided by the batches waiting, at least one) and moves to
-- the tail; a batch whose
-- list is empty leaves the queues. A call costs what it dispatches, not how many batches
-- wait. An item goes to the account with the most free slots among those that can take its
-- model (free slots = cap - in flight, capped by the submit grants taken), so work spreads
-- in proportion to free capacity; ties go round an account ring (`rr:{provider}`).
-- Budget: each dispatched item reserves its estimate (`est_cost`, 0 when unpriced) on the
-- batch. With `budget_usd` set, an item whose estimate would take spent + reserved past it
-- goes back to the head of the list, the batch gets `budget_exhausted` and leaves the
-- queues (raising the budget puts it back: raise_budget.lua).
-- KEYS: timers ZSET.
-- ARGV: prefix, provider, now, timer score, max_n, period, recover_s, tolerance,
--       number of accounts, then per account: name, cap, submit rpm, probe ('1': at most one
--       item), number of models, then per model: model id, cap ('' = none), rpm ('' = none).
-- Returns: {id1, account1, id2, account2, ...}, then {'', account} for each account whose
-- submit rate (its own or a model's) held an item back.

local timers = KEYS[1]
local prefix, provider, now, score = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local max_n = tonumber(ARGV[5])
local period, recover_s, tolerance = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local inflight = prefix .. 'inflight:'
local accounts, i, total = {}, 10, 0
for _ = 1, tonumber(ARGV[9]) do
  local a = {name = ARGV[i], cap = tonumber(ARGV[i + 1]), rpm = tonumber(ARGV[i + 2]),
             probe = ARGV[i + 3] == '1', models = {}, blocked = {}, limited = false}
  local n_models = tonumber(ARGV[i + 4])
  i = i + 5
  for _ = 1, n_models do
    a.models[ARGV[i]] = {cap = tonumber(ARGV[i + 1]), rpm = tonumber(ARGV[i + 2])}
    i = i + 3
  end
  local free = a.cap - (tonumber(redis.call('GET', inflight .. a.name)) or 0)
  if a.probe and free > 1 then free = 1 end
  if free > max_n then free = max_n end
  a.free, a.bucket = 0, prefix .. 'rate:' .. a.name .. ':submit'
  if free > 0 then
    a.free = take(a.bucket, now, free, a.rpm, period, recover_s, tolerance)
    a.limited = a.free < free
  end
  a.granted = a.free
  total = total + a.free
  accounts[#accounts + 1] = a
end
if total > max_n then total = max_n end

-- Ties between accounts go round, so equal accounts share equally.
local start = 0
if #accounts > 1 and total > 0 then
  start = redis.call('INCR', prefix .. 'rr:' .. provider) % #accounts
end

-- The account that takes an item of `model` now, or nil.
local function pick(model)
  while true do
    local best = nil
    for k = 0, #accounts - 1 do
      local a = accounts[(start + k) % #accounts + 1]
      if a.free > 0 and not a.blocked[model] and (best == nil or a.free > best.free) then
        local limit = a.models[model]
        if limit and limit.cap
            and (tonumber(redis.call('GET', inflight .. a.name .. '@' .. model)) or 0)
              >= limit.cap then
          a.blocked[model] = true
        else
          best = a
        end
      end
    end
    if best == nil then return nil end
    local limit = best.models[model]
    if not (limit and limit.rpm) then return best end
    local k = take(best.bucket .. '@' .. model, now, 1, limit.rpm, period, recover_s, tolerance)
    if k == 1 then return best end
    best.blocked[model] = true
    best.limited = true
  end
end

local out, left = {}, total
for _, prio in ipairs(PRIORITIES) do
  if left <= 0 then break end
  local ring = prefix .. 'ring:' .. provider .. ':' .. prio
  local waiting = redis.call('LLEN', ring)
  local stalled = 0  -- batches in a row that could give nothing (their models are full)
  local share, round = 0, 0  -- a round visits each waiting batch once, with equal shares
  while left > 0 and waiting > 0 and stalled < math.min(waiting, 32) do
    if round <= 0 then
      share, round = math.max(1, math.floor(left / waiting)), waiting
    end
    round = round - 1
    local bid = redis.call('LINDEX', ring, 0)
    local pending = prefix .. 'pending:' .. provider .. ':' .. bid
    local batch_key = prefix .. 'batch:' .. bid
    local got, leave = 0, false
    while got < share and left > 0 do
      local id = redis.call('LPOP', pending)
      if not id then break end
      local item_key = prefix .. 'item:' .. id
      local f = redis.call('HMGET', item_key, 'state', 'est_cost', 'model')
      local est = micro(f[2])
      local b = redis.call('HMGET', batch_key, 'budget_usd', 'spent_micro', 'reserved_micro',
                           'budget_exhausted')
      if f[1] == S.pending and redis.call('HEXISTS', batch_key, 'cancel_requested') == 1 then
        -- A cancelled batch dispatches nothing, not even items requeued after a 429.
        move(item_key, batch_key, inflight, S.pending, S.cancelled, provider, f[3])
        redis.call('HSET', item_key, 'error_code', 'cancelled',
                   'error_message', 'the batch was cancelled before this item was submitted')
      elseif f[1] == S.pending and b[1] and b[1] ~= ''
          and (tonumber(b[2]) or 0) + (tonumber(b[3]) or 0) + est > micro(b[1]) then
        redis.call('LPUSH', pending, id)
        local t = redis.call('TIME')
        redis.call('HSET', batch_key, 'budget_exhausted', string.format('%d.%06d', t[1], t[2]))
        leave = true
        break
      elseif f[1] == S.pending then
        local a = pick(f[3] or '')
        if a == nil then  -- no account can take this model now: the batch waits its turn
          redis.call('LPUSH', pending, id)
          break
        end
        if b[4] then redis.call('HDEL', batch_key, 'budget_exhausted') end
        redis.call('HINCRBY', batch_key, 'reserved_micro', int(est))
        redis.call('HSET', item_key, 'reserved_micro', int(est), 'account', a.name)
        move(item_key, batch_key, inflight, S.pending, S.dispatched, a.name, f[3])
        redis.call('ZADD', timers, score, id)
        out[#out + 1] = id
        out[#out + 1] = a.name
        a.free = a.free - 1
        got, left = got + 1, left - 1
      end
    end
    if leave or redis.call('LLEN', pending) == 0 then  -- off the queues (it is the head)
      redis.call('LPOP', ring)
      redis.call('SREM', prefix .. 'queues:' .. provider, bid)
      waiting, stalled = waiting - 1, 0
    else
      redis.call('RPUSH', ring, redis.call('LPOP', ring))  -- to the back of the round
      if got == 0 then stalled = stalled + 1 else stalled = 0 end
    end
  end
end

for _, a in ipairs(accounts) do
  refund(a.bucket, a.free)  -- grants taken for slots nothing was dispatched to
  if a.limited then
    out[#out + 1] = ''
    out[#out + 1] = a.name
  end
end
return out
