--[[ fail_entry: a delivery did not complete; requeue the entry or dead-letter it.

mode 'retry'   : counts this entry's deliveries; requeue while they stay < max, else dead-letter
mode 'handback': a shutting-down worker returns work it never finished; its own delivery
                 is not counted (earlier deliveries to crashed peers are)
mode 'bury'    : dead-letter now (delivered too often, or an error that retrying cannot fix)
mode 'cancel'  : the client went away during generation and the call was aborted: the
                 request ends `cancelled` (no dead letter: nobody wants the answer)
Requeue and dead-letter are one step each with the XACK + XDEL, so the entry is never in
two places, nor in none. A request that is already terminal is only acknowledged.

KEYS[1]  work stream   KEYS[2]  dead-letter stream   KEYS[3]  request record
KEYS[4]  reply stream of the waiting ingress         KEYS[5]  in-flight map   KEYS[6] counters
KEYS[7]  tokens in flight (hash: work entry id -> tokens)
ARGV[1]  now ms or ''  ARGV[2]  work group  ARGV[3]  work entry id  ARGV[4]  mode
ARGV[5]  last error    ARGV[6]  max deliveries       ARGV[7]  record TTL ms
ARGV[8]  reply MAXLEN ~  ARGV[9] reply TTL ms        ARGV[10] dead-letter MAXLEN ~

Reply: {0, new work id} requeued, {1, dlq id} dead-lettered, {2} already terminal,
       {3} work entry not found (nothing to do), {4} cancelled
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local found = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if #found == 0 then return {3} end
local f = found[1][2]
local fields = {}
for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
-- Deliveries of this work entry so far (crashed peers included), from the group's PEL.
local pel = redis.call('XPENDING', KEYS[1], ARGV[2], ARGV[3], ARGV[3], 1)
local delivered = 1
if #pel > 0 then delivered = tonumber(pel[1][4]) end
redis.call('XACK', KEYS[1], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[5], ARGV[3])
local held = redis.call('HGET', KEYS[7], ARGV[3])
redis.call('HDEL', KEYS[7], ARGV[3])

local status = redis.call('HGET', KEYS[3], 'status')
if status == 'completed' or status == 'failed' or status == 'expired' or status == 'cancelled' then
  return {2}
end

local mode = ARGV[4]
if mode == 'cancel' then
  redis.call('HSET', KEYS[3], 'status', 'cancelled', 'error', ARGV[5], 'updated_ms', now)
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
  redis.call('HINCRBY', KEYS[6], 'aborted', 1)
  return {4}
end
local deliveries = tonumber(fields['deliveries'] or '0') + delivered
if mode == 'handback' then deliveries = deliveries - 1 end
fields['deliveries'] = tostring(deliveries)
fields['last_error'] = ARGV[5]
local flat = {}
for k, v in pairs(fields) do flat[#flat + 1] = k; flat[#flat + 1] = v end

if mode ~= 'bury' and deliveries < tonumber(ARGV[6]) then
  local wid = redis.call('XADD', KEYS[1], '*', unpack(flat))
  redis.call('HSET', KEYS[5], wid, fields['rid'])
  if held then redis.call('HSET', KEYS[7], wid, held) end
  redis.call('HINCRBY', KEYS[6], 'requeued', 1)
  return {0, wid}
end

local dlq_id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[10], '*', unpack(flat))
redis.call('HSET', KEYS[3], 'status', 'failed', 'error', ARGV[5], 'dlq_id', dlq_id,
  'updated_ms', now)
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'rid', fields['rid'], 'kind', 'failed',
  'data', ARGV[5])
redis.call('PEXPIRE', KEYS[4], ARGV[9])
redis.call('HINCRBY', KEYS[6], 'failed', 1)
return {1, dlq_id}
