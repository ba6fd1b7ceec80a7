--[[ dispatch_entries: move up to `credits` entries from intake to work, atomically, in
weighted-fair order across tenants (deficit round robin).

credits = sum of capacity of workers whose lease has not expired - entries in the work stream;
when workers also declare a token capacity, the estimated tokens (prompt + max_tokens) in
flight must stay within its sum as well.
Which entry goes next: the tenant at the head of the ring gets `weight` requests per turn
(its deficit; fractions carry over), highest priority first and FIFO within a priority; a
tenant whose queues are empty leaves the ring; then the next tenant. Idle tenants are not in
the ring, so the cost per dispatched request does not depend on how many tenants exist.
An entry is XDELed from intake in the same call that XADDs it to work, so a crash can neither
lose nor duplicate one, and XLEN(intake) is exactly the backlog.
Entries whose deadline has passed end as `expired` instead, with no LLM call spent.

KEYS[1]  intake stream           KEYS[2]  work stream
KEYS[3]  worker leases (zset: worker id -> lease expiry ms)
KEYS[4]  worker capacity (hash: worker id -> slots)
KEYS[5]  dispatch bucket (hash: tokens, ts)
KEYS[6]  drain window (hash: w = second, c = dispatched in w, p = dispatched in w-1)
KEYS[7]  in-flight map (hash: work entry id -> request id)
KEYS[8]  counters (hash)
KEYS[9]  dispatch log (zset: work id -> dispatch ms, last second only)
KEYS[10] scheduler ring (list)  KEYS[11] scheduler tenants (hash: tenant -> weight)
KEYS[12] deficits (hash)        KEYS[13] tenant whose turn is unfinished (string)
KEYS[14] worker token capacity (hash: worker id -> tokens)
KEYS[15] tokens in flight (hash: work id -> estimated tokens)
ARGV[1]  now in ms, or '' for the server clock
ARGV[2]  max entries per call  ARGV[3]  dispatch rate /s (0 = unlimited)
ARGV[4]  dispatch burst        ARGV[5]  key prefix of request records and reply streams
ARGV[6]  record TTL ms         ARGV[7]  reply stream MAXLEN ~   ARGV[8] reply stream TTL ms
ARGV[9]  priority levels       ARGV[10] jitter margin ms of the rate window
The dispatch rate is held two ways: a token bucket (rate, burst) paces dispatches and lets
the loop catch up after a late wake-up; the log caps dispatches in any sliding window of
1000 ms + ARGV[10] (the jitter between a dispatch and the backend call it causes) at the
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
  redis.call('HDEL', KEYS[14], unpack(dead))
end
local capacity = 0
for _, slots in ipairs(redis.call('HVALS', KEYS[4])) do capacity = capacity + tonumber(slots) end
local credits = capacity - redis.call('XLEN', KEYS[2])
if credits <= 0 then return {1, 0, 0, 0, 0} end

-- Token capacity: -1 when no live worker declares one (slots alone then count).
local token_room, token_total = -1, 0
local token_caps = redis.call('HVALS', KEYS[14])
if #token_caps > 0 then
  for _, t in ipairs(token_caps) do token_total = token_total + tonumber(t) end
  token_room = token_total
  for _, t in ipairs(redis.call('HVALS', KEYS[15])) do token_room = token_room - tonumber(t) end
  if token_room <= 0 then return {1, 0, 0, 0, 0} end
end

local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens = credits
if rate > 0 then
  local st = redis.call('HMGET', KEYS[5], 'tokens', 'ts')
  local t0, ts = tonumber(st[1]), tonumber(st[2])
  if t0 and ts then tokens = math.min(burst, t0 + math.max(0, now - ts) * rate / 1000)
  else tokens = burst end
  if tokens < 1 then return {2, 0, 0, credits, math.ceil((1 - tokens) * 1000 / rate)} end
end

local window_room = credits
local window_ms = 1000 + tonumber(ARGV[10])
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', now - window_ms)
  window_room = math.floor(rate) - redis.call('ZCARD', KEYS[9])
  if window_room < 1 then
    local oldest = redis.call('ZRANGE', KEYS[9], 0, 0, 'WITHSCORES')
    return {2, 0, 0, credits, math.max(1, tonumber(oldest[2]) + window_ms - now + 1)}
  end
end

local want = math.min(credits, tonumber(ARGV[2]), math.floor(tokens), window_room)
local prefix, ttl = ARGV[5], tonumber(ARGV[6])
local levels = tonumber(ARGV[9])
local ring, tenants, deficits = KEYS[10], KEYS[11], KEYS[12]
local turn = redis.call('GET', KEYS[13])
local moved, expired, blocked = 0, 0, false

-- Pop the oldest request of the tenant's highest non-empty priority. Levels found empty stay
-- empty for the rest of this call (nothing is admitted while a script runs), so they are
-- skipped afterwards: `top[tenant]` is the highest level that may still hold something.
local top = {}
local tenant, deficit = nil, 0  -- the head of the ring while it is being served
local function pop(t)
  for p = top[t] or (levels - 1), 0, -1 do
    local q = prefix .. 'queue:' .. t .. ':' .. p
    local got = redis.call('ZPOPMIN', q)
    if got[1] then
      top[t] = p
      return q, got[1], got[2]
    end
  end
  top[t] = -1
  return nil, nil, nil
end

local function has_more(t)
  for p = top[t] or (levels - 1), 0, -1 do
    if redis.call('ZCARD', prefix .. 'queue:' .. t .. ':' .. p) > 0 then
      top[t] = p
      return true
    end
  end
  top[t] = -1
  return false
end

local function drop_head()  -- nothing queued any more: leave the ring, forget the deficit
  redis.call('LPOP', ring)
  redis.call('HDEL', tenants, tenant)
  redis.call('HDEL', deficits, tenant)
  tenant, turn = nil, false
end

local function expire(rid, fields)
  local rec = prefix .. 'req:' .. rid
  redis.call('HSET', rec, 'status', 'expired', 'error', 'deadline passed before dispatch',
    'updated_ms', now)
  redis.call('PEXPIRE', rec, ttl)
  local reply = prefix .. 'reply:' .. (fields['ingress'] or '')
  redis.call('XADD', reply, 'MAXLEN', '~', ARGV[7], '*', 'rid', rid, 'kind', 'expired')
  redis.call('PEXPIRE', reply, ARGV[8])
end

local function move(rid, flat, fields, cost)
  local wid
  if fields['rid'] then  -- a replayed entry already names its request
    wid = redis.call('XADD', KEYS[2], '*', unpack(flat))
  else
    wid = redis.call('XADD', KEYS[2], '*', 'rid', rid, unpack(flat))
  end
  redis.call('HSET', KEYS[7], wid, rid)
  if token_room >= 0 then redis.call('HSET', KEYS[15], wid, cost) end
  if rate > 0 then redis.call('ZADD', KEYS[9], now, wid) end
  local rec = prefix .. 'req:' .. rid
  redis.call('HSET', rec, 'status', 'running', 'dispatched_ms', now, 'updated_ms', now)
  redis.call('PEXPIRE', rec, ttl)
end

-- Deficit round robin over the ring. The head tenant's deficit lives in `deficit` while it
-- is served and is written back when its turn ends or the call does.
local steps = 0
local function leave_head(keep)
  if keep then redis.call('HSET', deficits, tenant, tostring(deficit)) end
  tenant = nil
end
while moved + expired < want and steps < want * 4 + 64 do
  steps = steps + 1
  if not tenant then
    tenant = redis.call('LINDEX', ring, 0)
    if not tenant then break end
    deficit = tonumber(redis.call('HGET', deficits, tenant) or '0')
    if turn ~= tenant then
      deficit = deficit + tonumber(redis.call('HGET', tenants, tenant) or '1')
      turn = tenant
    end
  end
  if deficit < 1 then  -- turn used up: to the back of the ring, keeping the fraction
    if has_more(tenant) then
      redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
      leave_head(true)
      turn = false
    else
      drop_head()
    end
  else
    local q, iid, score = pop(tenant)
    if not q then
      drop_head()
    else
      local found = redis.call('XRANGE', KEYS[1], iid, iid)
      local flat = found[1] and found[1][2]
      local fields = {}
      if flat then for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end end
      local rid = fields['rid'] or iid
      local cost = tonumber(fields['cost'] or '0') or 0
      -- A request that does not fit the token room waits for room (one larger than the whole
      -- capacity runs once nothing else is in flight).
      if flat and tonumber(fields['deadline_ms'] or '0') >= now and token_room >= 0
          and cost > token_room and token_room < token_total then
        redis.call('ZADD', q, score, iid)
        blocked = true
        break
      end
      if flat then  -- (no entry: cancelled meanwhile; its index is simply dropped)
        if tonumber(fields['deadline_ms'] or '0') < now then
          expire(rid, fields)
          expired = expired + 1
        else
          move(rid, flat, fields, cost)
          if token_room >= 0 then token_room = token_room - cost end
          moved = moved + 1
          deficit = deficit - 1
        end
        redis.call('XDEL', KEYS[1], iid)
      end
    end
  end
end
if tenant then leave_head(true) end
if turn then redis.call('SET', KEYS[13], turn) else redis.call('DEL', KEYS[13]) end
if moved + expired == 0 then
  if blocked then return {1, 0, 0, credits, 0} end
  if redis.call('LLEN', ring) == 0 then return {3, 0, 0, credits, 0} end
  return {0, 0, 0, credits, 0}  -- turns went round without a full deficit: call again
end

if rate > 0 then
  redis.call('PEXPIRE', KEYS[9], window_ms + 1000)
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
