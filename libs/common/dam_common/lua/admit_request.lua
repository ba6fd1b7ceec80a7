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
KEYS[6]  idempotency key of this client + Idempotency-Key (string: request id), used if ARGV[5] > 0
KEYS[7]  backend circuit (string, exists while open; set by workers after repeated failures)
KEYS[8]  tenant queue at this request's priority (zset: request id -> arrival score)
KEYS[9]  scheduler tenants (hash: tenant -> weight; exactly the tenants in the ring)
KEYS[10] scheduler ring (list of tenants)
KEYS[11] tenant token budget (hash: tokens, ts)
ARGV[1]  now in ms, or '' to use the server clock
ARGV[2]  the client's limits, packed (they change only with the limits file, so the ingress
         encodes them once per client): fields separated by \31, in this order:
         rate (tokens/s, > 0), burst (>= 1), intake rate (0: no global bucket), intake burst,
         backlog cap, stream MAXLEN ~ (above the cap), queue deadline ms, enforce ('1', or
         '0' for shadow mode), tenant, tenant weight (> 0), tenant backlog cap (0: global
         only), key prefix of the tenant's queues (<base>queue:<tenant>:), the tier's highest
         priority, tokens per minute (0: no token budget), enforce tokens ('1' / '0')
ARGV[3]  priority of this request (0 .. highest, higher first)
ARGV[4]  tokens this request reserves (estimated prompt + max_tokens)
ARGV[5]  idempotency TTL ms (0: the request carries no Idempotency-Key)
ARGV[6..] field, value pairs of the entry

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
local L = {}
for v in string.gmatch(ARGV[2], '[^\31]+') do L[#L + 1] = v end
local rate, burst = tonumber(L[1]), tonumber(L[2])
local grate, gburst = tonumber(L[3]), tonumber(L[4])
local backlog_cap, maxlen, deadline = tonumber(L[5]), L[6], tonumber(L[7])
local enforce, tenant, weight = L[8], L[9], L[10]
local tenant_cap, queue_prefix, max_prio = tonumber(L[11]), L[12], tonumber(L[13])
local tpm, enforce_tokens = tonumber(L[14]), L[15]
local prio, cost, idem_ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

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

if idem_ttl > 0 then
  local original = redis.call('GET', KEYS[6])
  if original then return {4, original} end
end

local open_ms = redis.call('PTTL', KEYS[7])
if open_ms > 0 then
  redis.call('HINCRBY', KEYS[5], 'rejected_circuit', 1)
  return {5, open_ms}
end

local tokens = refill(KEYS[1], rate, burst)
local shadowed = 0
if tokens < 1 then
  if enforce ~= '0' then
    local retry = math.ceil((1 - tokens) * 1000 / rate)
    local reset = math.ceil((burst - tokens) * 1000 / rate)
    redis.call('HINCRBY', KEYS[5], 'rejected_rate', 1)
    return {1, retry, 0, reset}
  end
  shadowed = 1
  redis.call('HINCRBY', KEYS[5], 'shadow_rate', 1)
end

local trate = tpm / 60
local ttokens = 0
if tpm > 0 then
  ttokens = refill(KEYS[11], trate, tpm)
  if ttokens < cost then
    if enforce_tokens ~= '0' then
      local need = math.min(cost, tpm) - ttokens
      redis.call('HINCRBY', KEYS[5], 'rejected_tokens', 1)
      return {6, math.ceil(need * 1000 / trate), math.max(0, math.floor(ttokens)),
        math.ceil((tpm - ttokens) * 1000 / trate)}
    end
    shadowed = 1
    redis.call('HINCRBY', KEYS[5], 'shadow_tokens', 1)
  end
end

local gtokens = 0
if grate > 0 then
  gtokens = refill(KEYS[2], grate, gburst)
  if gtokens < 1 then
    redis.call('HINCRBY', KEYS[5], 'rejected_intake', 1)
    return {2, math.ceil((1 - gtokens) * 1000 / grate)}
  end
end

if tenant_cap > 0 then
  local queued = 0  -- over the levels its requests may use
  for p = 0, math.max(prio, max_prio) do
    queued = queued + redis.call('ZCARD', queue_prefix .. p)
  end
  if queued >= tenant_cap then
    redis.call('HINCRBY', KEYS[5], 'rejected_tenant_backlog', 1)
    return {7, queued, drain_per_s()}
  end
end

local backlog = redis.call('XLEN', KEYS[3])
if backlog >= backlog_cap then
  redis.call('HINCRBY', KEYS[5], 'rejected_backlog', 1)
  return {3, backlog, drain_per_s()}
end

if tokens >= 1 then store(KEYS[1], tokens - 1, rate, burst) end
if grate > 0 then store(KEYS[2], gtokens - 1, grate, gburst) end
if tpm > 0 and ttokens >= cost then store(KEYS[11], ttokens - cost, trate, tpm) end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'accepted_ms', now,
  'deadline_ms', now + deadline, 'tenant', tenant, 'prio', ARGV[3],
  'weight', weight, 'cost', ARGV[4], unpack(fields))
local ms, seq = string.match(id, '^(%d+)-(%d+)$')
redis.call('ZADD', KEYS[8], tonumber(ms) * 1024 + math.min(tonumber(seq), 1023), id)
if redis.call('HSETNX', KEYS[9], tenant, weight) == 1 then
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
