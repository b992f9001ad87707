-- Claim one action from a rolling-window budget, atomically with its idempotency key.
-- KEYS[1] budget sorted set (member = idempotency key, score = claim time)
-- KEYS[2] idempotency key
-- ARGV    now, window_s, limit, idempotency ttl_s, member
-- Times come from the caller's injected clock, never from Redis TIME, so a replay and the
-- tests decide exactly as the live loop did.
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local member = ARGV[5]
-- '%.17g' keeps every bit of an epoch timestamp; Lua's default tostring keeps only 14 digits.
local cutoff = string.format('%.17g', now - window)

if redis.call('EXISTS', KEYS[2]) == 1 then
  -- A replay: report the window without spending it (read-only count).
  return {'duplicate', redis.call('ZCOUNT', KEYS[1], cutoff, '+inf')}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
local used = redis.call('ZCARD', KEYS[1])
if used >= limit then
  return {'exhausted', used}
end
redis.call('ZADD', KEYS[1], string.format('%.17g', now), member)
redis.call('SET', KEYS[2], string.format('%.17g', now), 'EX', math.max(1, math.ceil(ttl)))
-- The set only needs to outlive its newest member's window; +1 covers the rounding up.
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
return {'claimed', used + 1}
