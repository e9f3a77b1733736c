-- include: queues
-- QUEUE_BATCH: put a batch on the dispatch queues of the given providers (commit of a
-- validated batch), or take it off them with ARGV[3] = 'off' (cancel), in one step.
-- KEYS: batch hash.
-- ARGV: prefix, batch id, 'on' | 'off', provider...
-- Returns: 1.

local prefix, bid, on = ARGV[1], ARGV[2], ARGV[3] == 'on'
for i = 4, #ARGV do
  if on then
    queue_batch(prefix, ARGV[i], bid)
  else
    unqueue_batch(prefix, ARGV[i], bid)
    redis.call('DEL', prefix .. 'pending:' .. ARGV[i] .. ':' .. bid)
  end
end
return 1
