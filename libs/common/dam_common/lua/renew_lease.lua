--[[ renew_lease: a worker's heartbeat. Its capacity counts towards credits until the lease
lapses, on the server's clock (the same clock dispatch_entries.lua expires leases with).

KEYS[1]  worker leases (zset: worker id -> lease expiry ms)
KEYS[2]  worker capacity (hash: worker id -> slots)
KEYS[3]  worker token capacity (hash: worker id -> tokens; absent when counted in slots only)
ARGV[1]  now ms or ''   ARGV[2]  worker id   ARGV[3]  capacity (0 = leave: remove the lease)
ARGV[4]  lease TTL ms   ARGV[5]  token capacity (0 = none)

Reply: lease expiry in ms (0 after a removal)
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if tonumber(ARGV[3]) <= 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
  return 0
end
local expiry = now + tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], expiry, ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if tonumber(ARGV[5] or '0') > 0 then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
else
  redis.call('HDEL', KEYS[3], ARGV[2])
end
return expiry
