--[[ admit_request: one atomic admission decision, then XADD to the intake stream.

Checks, in order, without writing anything until all pass: the client's token bucket, the
tenant's LLM-token budget, the global intake bucket, the tenant's backlog cap, the global
backlog cap. Only an admitted request changes the buckets and the queues (rejected means never
entered). An admitted request is XADDed to the intake stream (the durable log: its id is the
request id, XLEN the backlog) and indexed in its tenant's queue for its priority; a tenant
that had nothing queued joins the dispatcher's round-robin ring.

KEYS[1]  client bucket (hash: tokens, ts)
KEYS[2]  global intake bucket (hash: tokens, ts)
KEYS[3]  intake stream
KEYS[4]  drain window (hash, written by dispatch_entries: w, c, p)
KEYS[5]  counters (hash of totals, for `dam status`; admissions are counted by the stream's
         own entries-added, so only rejections are counted here)
KEYS[6]  idempotency key of this client + Idempotency-Key (string: request id), used if ARGV[9] > 0
KEYS[7]  backend circuit (string, exists while open; set by workers after repeated failures)
KEYS[8]  tenant queue at this request's priority (zset: request id -> arrival score)
KEYS[9]  scheduler tenants (hash: tenant -> weight; exactly the tenants in the ring)
KEYS[10] scheduler ring (list of tenants)
KEYS[11] tenant token budget (hash: tokens, ts)
ARGV[1]  now in ms, or '' to use the server clock
ARGV[2]  client rate (tokens/s, > 0)
ARGV[3]  client burst (bucket size, >= 1)
ARGV[4]  intake rate (tokens/s; 0 disables the global bucket)
ARGV[5]  intake burst
ARGV[6]  backlog cap (max entries waiting in the intake stream)
ARGV[7]  stream MAXLEN ~ safety net (must sit above the backlog cap)
ARGV[8]  queue deadline in ms from now (the entry expires undispatched after it)
ARGV[9]  idempotency TTL ms (0: the request carries no Idempotency-Key)
ARGV[10] '1' to enforce the client bucket, '0' for shadow mode (count, let through)
ARGV[11] tenant             ARGV[12] tenant weight (> 0)
ARGV[13] tenant backlog cap (0: only the global cap)
ARGV[14] priority (0 .. levels-1, higher first)
ARGV[15] key prefix of this tenant's queues (<base>queue:<tenant>:)
ARGV[16] priority levels this tenant's requests may use (its tier's highest + 1): the
         levels its backlog is counted over
ARGV[17] tenant tokens per minute (0: no token budget)
ARGV[18] tokens this request reserves (estimated prompt + max_tokens)
ARGV[19] '1' to enforce the token budget, '0' for shadow mode
ARGV[20..] field, value pairs of the entry

Reply:
  {0, id, backlog_before, remaining, reset_ms, shadowed, 0, tokens_left,
   tokens_reset_ms}     admitted (shadowed = 1: over a limit, let through in shadow mode)
  {1, retry_ms, remaining, reset_ms}             client over its rate
  {2, retry_ms}                                  global intake rate exceeded
  {3, backlog, drain_per_s}                      backlog full
  {4, original_id}                               same Idempotency-Key seen: nothing enqueued
  {5, retry_ms}                                  backend circuit open: nothing enqueued
  {6, retry_ms, tokens_left, reset_ms}           tenant over its token budget
  {7, tenant_backlog, drain_per_s}               tenant's own backlog full
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Requests dispatched per second lately: the last full second of the drain window.
local function drain_per_s()
  local drain = redis.call('HMGET', KEYS[4], 'w', 'c', 'p')
  local w = tonumber(drain[1]) or 0
  local sec = math.floor(now / 1000)
  if w == sec then return tonumber(drain[3]) or 0 end
  if w == sec - 1 then return tonumber(drain[2]) or 0 end
  return 0
end

-- Refilled token count of a bucket at `now`; nothing is written here.
local function refill(key, rate, burst)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if not tokens or not ts then return burst end
  local elapsed = math.max(0, now - ts)
  return math.min(burst, tokens + elapsed * rate / 1000)
end

local function store(key, tokens, rate, burst)
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
end

local idem_ttl = tonumber(ARGV[9])
if idem_ttl > 0 then
  local original = redis.call('GET', KEYS[6])
  if original then return {4, original} end
end

local open_ms = redis.call('PTTL', KEYS[7])
if open_ms > 0 then
  redis.call('HINCRBY', KEYS[5], 'rejected_circuit', 1)
  return {5, open_ms}
end

local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = refill(KEYS[1], rate, burst)
local shadowed = 0
if tokens < 1 then
  if ARGV[10] ~= '0' then
    local retry = math.ceil((1 - tokens) * 1000 / rate)
    local reset = math.ceil((burst - tokens) * 1000 / rate)
    redis.call('HINCRBY', KEYS[5], 'rejected_rate', 1)
    return {1, retry, 0, reset}
  end
  shadowed = 1
  redis.call('HINCRBY', KEYS[5], 'shadow_rate', 1)
end

local tpm, cost = tonumber(ARGV[17]), tonumber(ARGV[18])
local trate = tpm / 60
local ttokens = 0
if tpm > 0 then
  ttokens = refill(KEYS[11], trate, tpm)
  if ttokens < cost then
    if ARGV[19] ~= '0' then
      local need = math.min(cost, tpm) - ttokens
      redis.call('HINCRBY', KEYS[5], 'rejected_tokens', 1)
      return {6, math.ceil(need * 1000 / trate), math.max(0, math.floor(ttokens)),
        math.ceil((tpm - ttokens) * 1000 / trate)}
    end
    shadowed = 1
    redis.call('HINCRBY', KEYS[5], 'shadow_tokens', 1)
  end
end

local grate, gburst = tonumber(ARGV[4]), tonumber(ARGV[5])
local gtokens = 0
if grate > 0 then
  gtokens = refill(KEYS[2], grate, gburst)
  if gtokens < 1 then
    redis.call('HINCRBY', KEYS[5], 'rejected_intake', 1)
    return {2, math.ceil((1 - gtokens) * 1000 / grate)}
  end
end

local tenant_cap = tonumber(ARGV[13])
if tenant_cap > 0 then
  local queued = 0
  for p = 0, tonumber(ARGV[16]) - 1 do queued = queued + redis.call('ZCARD', ARGV[15] .. p) end
  if queued >= tenant_cap then
    redis.call('HINCRBY', KEYS[5], 'rejected_tenant_backlog', 1)
    return {7, queued, drain_per_s()}
  end
end

local backlog = redis.call('XLEN', KEYS[3])
if backlog >= tonumber(ARGV[6]) then
  redis.call('HINCRBY', KEYS[5], 'rejected_backlog', 1)
  return {3, backlog, drain_per_s()}
end

if tokens >= 1 then store(KEYS[1], tokens - 1, rate, burst) end
if grate > 0 then store(KEYS[2], gtokens - 1, grate, gburst) end
if tpm > 0 and ttokens >= cost then store(KEYS[11], ttokens - cost, trate, tpm) end
local fields = {}
for i = 20, #ARGV do fields[#fields + 1] = ARGV[i] end
local tenant = ARGV[11]
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'accepted_ms', now,
  'deadline_ms', now + tonumber(ARGV[8]), 'tenant', tenant, 'prio', ARGV[14],
  'weight', ARGV[12], 'cost', ARGV[18], unpack(fields))
local ms, seq = string.match(id, '^(%d+)-(%d+)$')
redis.call('ZADD', KEYS[8], tonumber(ms) * 1024 + math.min(tonumber(seq), 1023), id)
if redis.call('HSETNX', KEYS[9], tenant, ARGV[12]) == 1 then
  redis.call('RPUSH', KEYS[10], tenant)
end
if idem_ttl > 0 then redis.call('SET', KEYS[6], id, 'PX', idem_ttl) end
local left = math.max(0, tokens - 1)
local tleft, treset = 0, 0
if tpm > 0 then
  tleft = math.max(0, ttokens - cost)
  treset = math.ceil((tpm - tleft) * 1000 / trate)
end
return {0, id, backlog, math.floor(left), math.ceil((burst - left) * 1000 / rate), shadowed,
  0, math.floor(tleft), treset}
