--[[ dispatch_entries: move up to `credits` entries from intake to work, atomically.

credits = sum of capacity of workers whose lease has not expired - entries in the work stream.
Entries are XACKed and XDELed from intake in the same call that XADDs them to work, so a
crash can neither lose nor duplicate one, and XLEN(intake) is exactly the backlog.
Entries whose deadline has passed end as `expired` instead, with no LLM call spent.

KEYS[1]  intake stream           KEYS[2]  work stream
KEYS[3]  worker leases (zset: worker id -> lease expiry ms)
KEYS[4]  worker capacity (hash: worker id -> slots)
KEYS[5]  dispatch bucket (hash: tokens, ts)
KEYS[6]  drain window (hash: w = second, c = dispatched in w, p = dispatched in w-1)
KEYS[7]  in-flight map (hash: work entry id -> request id)
KEYS[8]  counters (hash)
KEYS[9]  dispatch log (zset: work id -> dispatch ms, last second only)
ARGV[1]  now in ms, or '' for the server clock
ARGV[2]  intake group          ARGV[3]  consumer name (this dispatcher)
ARGV[4]  max entries per call  ARGV[5]  dispatch rate /s (0 = unlimited)
ARGV[6]  dispatch burst        ARGV[7]  key prefix of request records and reply streams
ARGV[8]  record TTL ms         ARGV[9]  reply stream MAXLEN ~   ARGV[10] reply stream TTL ms
The dispatch rate is held two ways: a token bucket (rate, burst) paces dispatches and lets
the loop catch up after a late wake-up; the log caps dispatches in any sliding 1000 ms at the
rate, so no second ever sees more than the rate, whatever the burst.
Per-request keys (<prefix>req:<rid>, <prefix>reply:<ingress>) share the pipeline's hash tag,
as BullMQ's job keys do, so the script stays single-slot on Redis Cluster.

Reply: {code, dispatched, expired, credits_left, wait_ms}
  code 0 moved something, 1 no credits, 2 rate limited (wait_ms), 3 intake empty
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Expired leases: their capacity no longer counts.
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  redis.call('HDEL', KEYS[4], unpack(dead))
end
local capacity = 0
for _, slots in ipairs(redis.call('HVALS', KEYS[4])) do capacity = capacity + tonumber(slots) end
local credits = capacity - redis.call('XLEN', KEYS[2])
if credits <= 0 then return {1, 0, 0, 0, 0} end

local rate, burst = tonumber(ARGV[5]), tonumber(ARGV[6])
local tokens = credits
if rate > 0 then
  local st = redis.call('HMGET', KEYS[5], 'tokens', 'ts')
  local t0, ts = tonumber(st[1]), tonumber(st[2])
  if t0 and ts then tokens = math.min(burst, t0 + math.max(0, now - ts) * rate / 1000)
  else tokens = burst end
  if tokens < 1 then return {2, 0, 0, credits, math.ceil((1 - tokens) * 1000 / rate)} end
end

local window_room = credits
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', now - 1000)
  window_room = math.floor(rate) - redis.call('ZCARD', KEYS[9])
  if window_room < 1 then
    local oldest = redis.call('ZRANGE', KEYS[9], 0, 0, 'WITHSCORES')
    return {2, 0, 0, credits, math.max(1, tonumber(oldest[2]) + 1000 - now + 1)}
  end
end

local want = math.min(credits, tonumber(ARGV[4]), math.floor(tokens), window_room)
local read = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', want,
  'STREAMS', KEYS[1], '>')
if not read or not read[1] or #read[1][2] == 0 then return {3, 0, 0, credits, 0} end

local prefix, ttl = ARGV[7], tonumber(ARGV[8])
local moved, expired = 0, 0
for _, entry in ipairs(read[1][2]) do
  local id, f = entry[1], entry[2]
  local fields = {}
  for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
  local rid = fields['rid'] or id
  local rec = prefix .. 'req:' .. rid
  if tonumber(fields['deadline_ms'] or '0') < now then
    redis.call('HSET', rec, 'status', 'expired', 'error', 'deadline passed before dispatch',
      'updated_ms', now)
    redis.call('PEXPIRE', rec, ttl)
    local reply = prefix .. 'reply:' .. (fields['ingress'] or '')
    redis.call('XADD', reply, 'MAXLEN', '~', ARGV[9], '*', 'rid', rid, 'kind', 'expired')
    redis.call('PEXPIRE', reply, ARGV[10])
    expired = expired + 1
  else
    local wid
    if fields['rid'] then
      wid = redis.call('XADD', KEYS[2], '*', unpack(f))
    else
      wid = redis.call('XADD', KEYS[2], '*', 'rid', rid, unpack(f))
    end
    redis.call('HSET', KEYS[7], wid, rid)
    if rate > 0 then redis.call('ZADD', KEYS[9], now, wid) end
    redis.call('HSET', rec, 'status', 'running', 'dispatched_ms', now, 'updated_ms', now)
    redis.call('PEXPIRE', rec, ttl)
    moved = moved + 1
  end
  redis.call('XACK', KEYS[1], ARGV[2], id)
  redis.call('XDEL', KEYS[1], id)
end

if rate > 0 then
  redis.call('PEXPIRE', KEYS[9], 2000)
  redis.call('HSET', KEYS[5], 'tokens', tostring(tokens - moved), 'ts', now)
  redis.call('PEXPIRE', KEYS[5], math.ceil(burst * 1000 / rate) + 1000)
end
local sec = math.floor(now / 1000)
local w = tonumber(redis.call('HGET', KEYS[6], 'w') or '0')
if w ~= sec then
  local prev = 0
  if w == sec - 1 then prev = tonumber(redis.call('HGET', KEYS[6], 'c') or '0') end
  redis.call('HSET', KEYS[6], 'w', sec, 'c', 0, 'p', prev)
end
redis.call('HINCRBY', KEYS[6], 'c', moved)
redis.call('HINCRBY', KEYS[8], 'dispatched', moved)
redis.call('HINCRBY', KEYS[8], 'expired', expired)
return {0, moved, expired, credits - moved, 0}
