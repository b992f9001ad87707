-- Pending approvals: every state change of one approval, atomically. ARGV[1] picks the op.
-- An approval is a hash: approval_id, request (JSON), created_at, expires_at, reason, state,
-- approver, decided_at, note. Times come from the caller's injected clock (never Redis
-- TIME) and are stored as the caller wrote them, so no float passes through Lua's 14-digit
-- tostring.
--
-- create  KEYS approval hash, pending zset
--         ARGV 'create', ttl_s, then field/value pairs of the new approval
--         -> {1} created, or {0, fields...} the existing approval (a replayed request)
-- decide  KEYS approval hash, pending zset, nonce key
--         ARGV 'decide', now, new state, approver, decided_at, note, nonce ttl_ms, retention_s
--         -> {code, fields...}; code 'applied', 'token_reused', 'already_decided',
--            'approval_expired', or {'unknown_approval'}
-- expire  KEYS approval hash, pending zset
--         ARGV 'expire', now, retention_s, approval id
--         -> {1, fields...} when this call moved it PENDING -> EXPIRED, else {0}
local op = ARGV[1]
local approval, pending = KEYS[1], KEYS[2]

if op == 'create' then
  if redis.call('EXISTS', approval) == 1 then
    return {0, unpack(redis.call('HGETALL', approval))}
  end
  local fields = {}
  local id, expires_at
  for i = 3, #ARGV, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
    if ARGV[i] == 'approval_id' then id = ARGV[i + 1] end
    if ARGV[i] == 'expires_at' then expires_at = ARGV[i + 1] end
  end
  redis.call('HSET', approval, unpack(fields))
  redis.call('EXPIRE', approval, math.max(1, math.ceil(tonumber(ARGV[2]))))
  redis.call('ZADD', pending, expires_at, id)
  return {1}
end

if op == 'decide' then
  if redis.call('EXISTS', approval) == 0 then
    return {'unknown_approval'}
  end
  -- A spent nonce first: once a token was used its approval is decided, so checking the
  -- state first would never let 'token_reused' be the answer.
  if redis.call('EXISTS', KEYS[3]) == 1 then
    return {'token_reused', unpack(redis.call('HGETALL', approval))}
  end
  local state = redis.call('HGET', approval, 'state')
  if state == 'expired' then
    return {'approval_expired', unpack(redis.call('HGETALL', approval))}
  end
  if state ~= 'pending' then
    return {'already_decided', unpack(redis.call('HGETALL', approval))}
  end
  if tonumber(ARGV[2]) >= tonumber(redis.call('HGET', approval, 'expires_at')) then
    return {'approval_expired', unpack(redis.call('HGETALL', approval))}
  end
  -- The nonce is spent only here, together with the decision it carries.
  redis.call('SET', KEYS[3], '1', 'PX', math.max(1, math.ceil(tonumber(ARGV[7]))))
  redis.call('HSET', approval, 'state', ARGV[3], 'approver', ARGV[4], 'decided_at', ARGV[5],
             'note', ARGV[6])
  redis.call('EXPIRE', approval, math.max(1, math.ceil(tonumber(ARGV[8]))))
  redis.call('ZREM', pending, redis.call('HGET', approval, 'approval_id'))
  return {'applied', unpack(redis.call('HGETALL', approval))}
end

if op == 'expire' then
  local state = redis.call('HGET', approval, 'state')
  if state ~= 'pending' then
    -- Decided, already expired by another sweeper, or gone past retention: not ours.
    redis.call('ZREM', pending, ARGV[4])
    return {0}
  end
  if tonumber(ARGV[2]) < tonumber(redis.call('HGET', approval, 'expires_at')) then
    return {0}
  end
  redis.call('HSET', approval, 'state', 'expired')
  redis.call('EXPIRE', approval, math.max(1, math.ceil(tonumber(ARGV[3]))))
  redis.call('ZREM', pending, ARGV[4])
  return {1, unpack(redis.call('HGETALL', approval))}
end

return redis.error_reply('approvals.lua: unknown op ' .. tostring(op))
