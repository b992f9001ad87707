-- Undo one CLAIMED request that never ran (the queue refused it, or its claim proved
-- unrunnable): the idempotency key, its budget entries and its in-flight slots go, so a retry
-- of the same request claims afresh and the budgets count as if it never happened.
-- One script so no claim can read the budgets half undone.
--
-- KEYS are limits.lua's, in the same order (only 1, 2, 4, 5, 6 and 7 are used here).
-- KEYS[8..10] (cooldown, targets and services touched) stay: someone tried to act on that
-- target, and counting it is the safe side of every limit.
-- ARGV[1] idempotency key (the member every zset holds for this request)
-- Reply: 1 when the request was claimed and is now undone, 0 when it was not claimed.

-- A key of another type would fail its ZREM after earlier ones ran (scripts do not roll
-- back), so check them all before the first write: all undone or nothing.
local used = {2, 4, 5, 6, 7}
for _, i in ipairs(used) do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  if kind ~= 'zset' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. kind .. ', not a zset')
  end
end
-- Without the key nothing is ours to undo: the request was never claimed, was undone
-- already, or its key expired and its entries belong to windows we must not rewrite.
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
local member = ARGV[1]
for _, i in ipairs(used) do
  redis.call('ZREM', KEYS[i], member)
end
return 1
