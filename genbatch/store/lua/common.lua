-- include: states
-- Helpers shared by the scripts that move items between states (prepended to them by
-- scripts.load): money in micro-dollars, settling an attempt's reservation, counting a
-- batch's open items and moving an item's state with its counters.
-- KEYS: none of its own (each helper takes the keys it touches as arguments).
-- ARGV: none of its own (likewise).
-- Returns: nothing: it only defines local functions for the script it is prepended to.
-- The state tables it uses (S, COUNTER, INFLIGHT, OPEN, TERMINAL) are the generated
-- `states` preamble, from genbatch/models.py.

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
  if cur == new or TERMINAL[cur] or not (TERMINAL[new] or new == S.pending) then return end
  local f = redis.call('HMGET', item_key, 'reserved_micro', 'cost', 'est_cost')
  local held = tonumber(f[1]) or 0
  local spent, est = 0, 0
  if new == S.ambiguous then
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
  local vals = redis.call('HMGET', batch_key, unpack(OPEN))
  local n = 0
  for _, v in ipairs(vals) do n = n + (tonumber(v) or 0) end
  return n
end

-- Move an item's state with its batch counters and the in-flight counts of its account
-- (`inflight:{account}`) and of the account's model (`inflight:{account}@{model}`, for
-- per-model limits; never below 0, items dispatched before it existed did not count).
local function move(item_key, batch_key, inflight_prefix, cur, new, account, model)
  if cur == new then return end
  redis.call('HINCRBY', batch_key, COUNTER[cur], -1)
  redis.call('HINCRBY', batch_key, COUNTER[new], 1)
  local per_model = inflight_prefix .. account .. '@' .. (model or '')
  if INFLIGHT[cur] and not INFLIGHT[new] then
    redis.call('DECR', inflight_prefix .. account)
    if redis.call('DECR', per_model) < 0 then redis.call('SET', per_model, 0) end
  elseif INFLIGHT[new] and not INFLIGHT[cur] then
    redis.call('INCR', inflight_prefix .. account)
    redis.call('INCR', per_model)
  end
  redis.call('HSET', item_key, 'state', new)
end

-- The account an item is (or was last) at: its `account`, else its provider's own one.
local function account_of(account, provider)
  if account and account ~= '' then return account end
  return provider or ''
end
