-- SCAN_ITEMS: one page of a batch's items, filtered inside Redis (store/pages.py).
-- KEYS: none (reads item:{bid}:{seq} built from ARGV; one batch, one Redis).
-- ARGV: prefix, batch id, first seq, last seq (inclusive bound), direction (1 | -1),
--       limit, budget, states (comma-separated, "" = any), provider, model,
--       lower-case needle.
-- Returns: the next seq to look at, then the matching seqs in the order walked.

local prefix, bid = ARGV[1], ARGV[2]
local seq, stop, dir = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local limit, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local states, any_state = {}, ARGV[8] == ''
for s in string.gmatch(ARGV[8], '[^,]+') do states[s] = true end
local provider, model, needle = ARGV[9], ARGV[10], ARGV[11]
local found, scanned = {}, 0
while #found < limit and scanned < budget and seq * dir <= stop * dir do
  local f = redis.call('HMGET', prefix .. 'item:' .. bid .. ':' .. seq,
                       'state', 'provider', 'model', 'custom_id')
  scanned = scanned + 1
  if f[1] and (any_state or states[f[1]]) and (provider == '' or f[2] == provider)
      and (model == '' or f[3] == model)
      and (needle == '' or string.find(string.lower(f[4] or ''), needle, 1, true)) then
    found[#found + 1] = seq
  end
  seq = seq + dir
end
table.insert(found, 1, seq)
return found
