--[[ complete_request: record the terminal result, XACK + XDEL the work entry, wake the ingress.

The terminal state is written once: if the record is already terminal (a peer that reclaimed
this request finished first), only the acknowledgement happens and the reply says so.

KEYS[1]  work stream        KEYS[2]  request record (hash)
KEYS[3]  reply stream of the ingress waiting for this request
KEYS[4]  in-flight map (hash: work entry id -> request id)
KEYS[5]  counters (hash)    KEYS[6]  tokens in flight (hash: work entry id -> tokens)
ARGV[1]  now in ms, or ''   ARGV[2]  work group      ARGV[3]  work entry id
ARGV[4]  request id         ARGV[5]  completion JSON
ARGV[6]  record TTL ms      ARGV[7]  reply MAXLEN ~  ARGV[8]  reply stream TTL ms

Reply: 0 completed now, 1 was already terminal (acknowledged only)
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
redis.call('XACK', KEYS[1], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[3])
redis.call('HDEL', KEYS[6], ARGV[3])

local status = redis.call('HGET', KEYS[2], 'status')
if status == 'completed' or status == 'failed' or status == 'expired' or status == 'cancelled' then
  return 1
end
redis.call('HSET', KEYS[2], 'status', 'completed', 'result', ARGV[5], 'updated_ms', now)
redis.call('HDEL', KEYS[2], 'error')
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'rid', ARGV[4], 'kind', 'completed',
  'data', ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[8])
redis.call('HINCRBY', KEYS[5], 'completed', 1)
return 0
