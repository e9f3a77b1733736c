-- include: window
-- REFUND: give back m unused grants (the newest ones), and their share of the spacing
-- after a 429 (`take` never lets `nxt` lag behind `now`).
-- KEYS: bucket.
-- ARGV: m.
-- Returns: 1.

refund(KEYS[1], tonumber(ARGV[1]))
return 1
