-- Claim (or, in 'peek' mode, only evaluate) one action request against every limit at once.
-- One script so the checks and the writes are one atomic step: two replicas can never both
-- see the last unit of a budget, and the idempotency key is taken with the claim itself.
--
-- KEYS[1]  idempotency key (string, value = claim time)
-- KEYS[2]  (action, service) budget      zset member = idempotency key, score = claim time
-- KEYS[3]  (action, service) horizon     string: the longest window any request used on it
-- KEYS[4]  service budget                zset member = idempotency key, score = claim time
-- KEYS[5]  global budget                 zset member = idempotency key, score = claim time
-- KEYS[6]  in flight on the service      zset member = idempotency key, score = lease end
-- KEYS[7]  in flight everywhere          zset member = idempotency key, score = lease end
-- KEYS[8]  last action on (service, target)   string, value = claim time
-- KEYS[9]  targets of the service touched     zset member = target,  score = last touch
-- KEYS[10] services touched                   zset member = service, score = last touch
-- ARGV  1 mode ('claim'|'peek')   2 now   3 idempotency key   4 target   5 service
--       6 idempotency ttl_s       7/8 action-service limit/window   9/10 service limit/window
--      11/12 global limit/window 13 in-flight per service limit   14 in-flight global limit
--      15 lease_s  16 cooldown_s  17 blast fraction  18 service targets  19 blast window_s
--      20 max services
-- A limit of -1 means "not configured". Times come from the caller's injected clock, never
-- from Redis TIME, so a replay and the tests decide exactly as the live loop did.
-- Reply: {word, code, as_used, svc_used, glob_used, in_flight_svc, in_flight_glob,
--         last_target_at ('' if none), targets_touched, target_touched (0/1),
--         services_touched, service_touched (0/1)}, counts as read before this claim.

-- '%.17g' keeps every bit of an epoch timestamp; Lua's default tostring keeps 14 digits.
local function fmt(x) return string.format('%.17g', x) end
-- Redis TTLs run on wall time, scores on the injected clock; +1 covers ceil's rounding.
local function ttl(s) return math.ceil(s) + 1 end

local mode, now = ARGV[1], tonumber(ARGV[2])
local member, target, service = ARGV[3], ARGV[4], ARGV[5]
local idem_ttl = tonumber(ARGV[6])
local as_limit, as_window = tonumber(ARGV[7]), tonumber(ARGV[8])
local svc_limit, svc_window = tonumber(ARGV[9]), tonumber(ARGV[10])
local glob_limit, glob_window = tonumber(ARGV[11]), tonumber(ARGV[12])
local ccs_limit, ccg_limit = tonumber(ARGV[13]), tonumber(ARGV[14])
local lease, cooldown = tonumber(ARGV[15]), tonumber(ARGV[16])
local fraction, targets = tonumber(ARGV[17]), tonumber(ARGV[18])
local blast_window, max_services = tonumber(ARGV[19]), tonumber(ARGV[20])

local duplicate = redis.call('EXISTS', KEYS[1]) == 1
local writing = mode == 'claim' and not duplicate

-- Rules may give one (action, service) budgets of different windows: evict only what the
-- longest of them no longer counts, or a short-window claim would erase a long one's history.
local as_horizon = as_window
if as_limit >= 0 then
  as_horizon = math.max(as_window, tonumber(redis.call('GET', KEYS[3]) or '0') or 0)
end

if writing then
  -- Eviction only bounds memory: every count below reads its own window, so a peek or a
  -- duplicate (which write nothing) count exactly as a claim does.
  if as_limit >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. fmt(now - as_horizon))
  end
  if svc_limit >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. fmt(now - svc_window))
  end
  if glob_limit >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. fmt(now - glob_window))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', fmt(now))
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', fmt(now))
  redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', '(' .. fmt(now - blast_window))
  redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', '(' .. fmt(now - blast_window))
end

-- A claim exactly one window old still counts (score >= now - window).
local function since(key, window)
  return redis.call('ZCOUNT', key, fmt(now - window), '+inf')
end
local function recent(key, name)
  local score = redis.call('ZSCORE', key, name)
  return score and tonumber(score) >= now - blast_window
end

local as_used = as_limit >= 0 and since(KEYS[2], as_window) or 0
local svc_used = svc_limit >= 0 and since(KEYS[4], svc_window) or 0
local glob_used = glob_limit >= 0 and since(KEYS[5], glob_window) or 0
-- A slot whose lease has ended (score <= now) is free: its runner died without releasing.
local ccs = redis.call('ZCOUNT', KEYS[6], '(' .. fmt(now), '+inf')
local ccg = redis.call('ZCOUNT', KEYS[7], '(' .. fmt(now), '+inf')
local last = redis.call('GET', KEYS[8])
local touched = since(KEYS[9], blast_window)
local target_seen = recent(KEYS[9], target)
local services = since(KEYS[10], blast_window)
local service_seen = recent(KEYS[10], service)

local code = nil
if duplicate then
  code = 'duplicate'
elseif as_limit >= 0 and as_used >= as_limit then
  code = 'budget_action_service'
elseif svc_limit >= 0 and svc_used >= svc_limit then
  code = 'budget_service'
elseif glob_limit >= 0 and glob_used >= glob_limit then
  code = 'budget_global'
elseif ccs_limit >= 0 and ccs >= ccs_limit then
  code = 'concurrency_service'
elseif ccg_limit >= 0 and ccg >= ccg_limit then
  code = 'concurrency_global'
elseif cooldown > 0 and last and now < tonumber(last) + cooldown then
  code = 'cooldown'
elseif fraction >= 0 and (touched + (target_seen and 0 or 1)) / targets > fraction then
  code = 'blast_radius'
elseif max_services >= 0 and services + (service_seen and 0 or 1) > max_services then
  code = 'blast_services'
end

local reply = {'', '', as_used, svc_used, glob_used, ccs, ccg, last or '',
               touched, target_seen and 1 or 0, services, service_seen and 1 or 0}
if code == 'duplicate' then
  reply[1], reply[2] = 'duplicate', code
  return reply
elseif code then
  reply[1], reply[2] = 'refused', code
  return reply
end
reply[1], reply[2] = 'claimed', 'claimed'
if mode ~= 'claim' then
  return reply
end

local at = fmt(now)
if as_limit >= 0 then
  redis.call('ZADD', KEYS[2], at, member)
  redis.call('EXPIRE', KEYS[2], ttl(as_horizon))
  redis.call('SET', KEYS[3], fmt(as_horizon), 'EX', ttl(as_horizon))
end
if svc_limit >= 0 then
  redis.call('ZADD', KEYS[4], at, member)
  redis.call('EXPIRE', KEYS[4], ttl(svc_window))
end
if glob_limit >= 0 then
  redis.call('ZADD', KEYS[5], at, member)
  redis.call('EXPIRE', KEYS[5], ttl(glob_window))
end
-- Slots are recorded even with no concurrency limit, so enabling one on a hot reload
-- already sees what is in flight.
local lease_end = fmt(now + lease)
redis.call('ZADD', KEYS[6], lease_end, member)
redis.call('EXPIRE', KEYS[6], ttl(lease))
redis.call('ZADD', KEYS[7], lease_end, member)
redis.call('EXPIRE', KEYS[7], ttl(lease))
if cooldown > 0 and not (last and tonumber(last) > now) then
  redis.call('SET', KEYS[8], at, 'EX', ttl(cooldown))
end
-- GT: a late replica's older clock reading never moves a last touch backwards.
redis.call('ZADD', KEYS[9], 'GT', at, target)
redis.call('EXPIRE', KEYS[9], ttl(blast_window))
redis.call('ZADD', KEYS[10], 'GT', at, service)
redis.call('EXPIRE', KEYS[10], ttl(blast_window))
redis.call('SET', KEYS[1], at, 'EX', math.max(1, math.ceil(idem_ttl)))
return reply
