-- include: states, queues
-- ADD_ITEMS: write a chunk of new item records of a batch in one call. ARGV[4] and ARGV[5]
-- are strings of length-prefixed tokens (`<bytes>:<value>`), parsed with string.find/sub:
-- cheaper inside Redis than cjson-decoding records whose values are themselves JSON.
-- ARGV[4] lists the chunk's field-name lists (schemas): n, then n names, per schema.
-- ARGV[5] holds the records: check id, line, schema number k, then one value per field
-- of schema k (each schema has seq, state and provider); k = 0 is a check-only entry (a
-- row that is validated but not written).
-- With ARGV[3] (a temporary hash custom_id -> first line, deleted at commit/discard) each
-- non-empty check id is made unique per batch: a repeated one turns its record into a
-- failed `invalid_row` item (never a pending one) and is returned. Pending ids go onto their
-- per-account lists in manifest order (for a batch already running, its account queues
-- are marked too). Each record is counted in its state's batch counter.
-- KEYS: batch hash.
-- ARGV: key prefix, batch id, ids hash key or '', schemas, records.
-- Returns: {seq or '', line, check id, first line, ...} per duplicate; an error reply
-- starting BATCHGONE when the batch no longer exists.

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
      state = S.failed
      args[state_at] = state
      args[#args + 1] = 'error_code'
      args[#args + 1] = 'invalid_row'
      args[#args + 1] = 'error_message'
      args[#args + 1] = 'custom_id: duplicate custom_id'  -- exact text set by the caller
    end
    local iid = bid .. ':' .. seq
    redis.call('HSET', prefix .. 'item:' .. iid, unpack(args))
    written = written + 1
    local counter = COUNTER[state]  -- the batch counter of the record's state
    counts[counter] = (counts[counter] or 0) + 1
    if state == S.pending then
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
local live = redis.call('HGET', KEYS[1], 'status') ~= B.validating
for _, p in ipairs(order) do
  local list = pending[p]
  for i = 1, #list, 500 do
    redis.call('RPUSH', prefix .. 'pending:' .. p .. ':' .. bid,
               unpack(list, i, math.min(i + 499, #list)))
  end
  if live then  -- items added to a running batch (submit --resume) are dispatchable now
    queue_batch(prefix, p, bid)
  end
end
if written > 0 then
  redis.call('HINCRBY', KEYS[1], 'total', written)
end
for counter, k in pairs(counts) do
  redis.call('HINCRBY', KEYS[1], counter, k)
end
-- The producer's heartbeat: a `validating` batch not touched for a while is one whose
-- producer died; the scheduler's sweep discards it (Ingest.reap_validating, store/writer.py).
redis.call('HSET', KEYS[1], 'touched', redis.call('TIME')[1])
return dups
