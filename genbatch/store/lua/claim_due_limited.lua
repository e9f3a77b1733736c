-- include: states, window
-- CLAIM_DUE_LIMITED: claim due timers. Every item with a timer to act on (neither
-- terminal nor pending) whose timer is at or before `now` gets its timer pushed to `lease`
-- (so a lost message is re-sent then) and is returned with its state; terminal and
-- pending items lose their timer (a pending item waits on its account's pending list: the
-- dispatcher moves it, not a timer). An item in `submitted` (its next action is a poll)
-- is claimed only if its account's poll bucket grants a request; otherwise it stays due
-- for a later tick. Accounts without a rate given are not limited. An item in
-- `downloading` gets the downloads' own (shorter) lease `dl_lease`, and the claimed
-- downloads come last, earliest video-URL expiry (`url_expires_at`) first.
-- KEYS: timers ZSET.
-- ARGV: prefix, now, lease, max_n, max_scan, period, recover_s, tolerance, dl_lease
--       ('' = lease), then per account: account name, poll rpm.
-- Returns: {id1, state1, ...} (downloads last, earliest deadline first), then {'', account}
-- for each account whose poll budget held a due poll back.

local timers = KEYS[1]
local prefix, now, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local max_n, max_scan = tonumber(ARGV[4]), tonumber(ARGV[5])
local period, recover_s, tolerance = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local dl_lease = ARGV[9] ~= '' and ARGV[9] or lease
local rpm = {}
local i = 10
while ARGV[i] do rpm[ARGV[i]] = tonumber(ARGV[i + 1]); i = i + 2 end
local exhausted = {}
local out, downloads, claimed, offset, scanned = {}, {}, 0, 0, 0
while claimed < max_n and scanned < max_scan do
  local ids = redis.call('ZRANGEBYSCORE', timers, '-inf', ARGV[2], 'LIMIT', offset, 200)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    scanned = scanned + 1
    local f = redis.call('HMGET', prefix .. 'item:' .. id, 'state', 'provider',
                         'url_expires_at', 'account')
    local state, provider = f[1], f[2]
    if f[4] and f[4] ~= '' then provider = f[4] end  -- the account it was submitted with
    if (not state) or TERMINAL[state] or state == S.pending then  -- done, or on a list
      redis.call('ZREM', timers, id)
    else
      local ok = true
      if state == S.submitted and rpm[provider] then
        if exhausted[provider] then
          ok = false
        else
          local k = take(prefix .. 'rate:' .. provider .. ':poll', now, 1, rpm[provider],
                         period, recover_s, tolerance)
          if k == 0 then ok = false; exhausted[provider] = true end
        end
      end
      if ok and state == S.downloading then
        redis.call('ZADD', timers, dl_lease, id)
        downloads[#downloads + 1] = {id, tonumber(f[3]) or math.huge}
        claimed = claimed + 1
        if claimed >= max_n then break end
      elseif ok then
        redis.call('ZADD', timers, lease, id)
        out[#out + 1] = id
        out[#out + 1] = state
        claimed = claimed + 1
        if claimed >= max_n then break end
      else
        offset = offset + 1
      end
    end
  end
  if #ids < 200 then break end
end
table.sort(downloads, function(a, b) return a[2] < b[2] end)  -- earliest deadline first
for _, d in ipairs(downloads) do
  out[#out + 1] = d[1]
  out[#out + 1] = S.downloading
end
for provider in pairs(exhausted) do  -- accounts whose poll budget held a due poll back
  out[#out + 1] = ''
  out[#out + 1] = provider
end
return out
