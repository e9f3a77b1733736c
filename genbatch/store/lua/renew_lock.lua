-- RENEW_LOCK: leader lock renewal: extend the lock only if we still own it.
-- KEYS: lock.
-- ARGV: token, ttl_ms.
-- Returns: 1 when renewed, 0 when the lock is someone else's or gone.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
