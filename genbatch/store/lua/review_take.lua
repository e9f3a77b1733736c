-- REVIEW_TAKE: redo's claim on a rejected item (store/review.py): delete its verdict only
-- while it still says `rejected`, so of two redos racing only one resubmits the item.
-- KEYS: review:{bid}.
-- ARGV: the item's seq, "rejected".
-- Returns: 1 when this call removed the mark, else 0.

if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
