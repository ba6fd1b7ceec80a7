--[[ cancel_request: the waiting client went away; if its request is still queued, it ends as
`cancelled` and is never dispatched (no LLM tokens for clients who left).

KEYS[1]  intake stream   KEYS[2]  request record   KEYS[3]  counters
KEYS[4]  the tenant queue the request waits in (zset)
ARGV[1]  now ms or ''    ARGV[2]  request id (its intake entry id)   ARGV[3]  record TTL ms
ARGV[4]  abort channel: a request already running is announced there, so that the worker
         holding it aborts the backend call

Reply: 1 cancelled, 2 running (abort announced), 0 neither (terminal, or unknown)
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if redis.call('XDEL', KEYS[1], ARGV[2]) == 0 then
  if redis.call('HGET', KEYS[2], 'status') ~= 'running' then return 0 end
  redis.call('PUBLISH', ARGV[4], ARGV[2])
  redis.call('HINCRBY', KEYS[3], 'gone_while_running', 1)
  return 2
end
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[2], 'status', 'cancelled', 'error', 'the client went away while queued',
  'updated_ms', now)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
return 1
