--[[ cancel_request: the waiting client went away; if its request is still queued, it ends as
`cancelled` and is never dispatched (no LLM tokens for clients who left).

KEYS[1]  intake stream   KEYS[2]  request record   KEYS[3]  counters
ARGV[1]  now ms or ''    ARGV[2]  request id (its intake entry id)   ARGV[3]  record TTL ms

Reply: 1 cancelled, 0 too late (already dispatched, or not queued)
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if redis.call('XDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'status', 'cancelled', 'error', 'the client went away while queued',
  'updated_ms', now)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
return 1
