--[[ claim_stale: one XAUTOCLAIM step over the work group, for entries idle past the
visibility timeout (their worker died or froze). Loop it on the cursor until it is 0-0.

Entries XAUTOCLAIM reports as deleted were accepted requests that vanished from the stream:
they are recorded as `failed` here, never ignored.

KEYS[1]  work stream   KEYS[2]  in-flight map (work id -> request id)   KEYS[3] counters
KEYS[4]  tokens in flight (hash: work id -> tokens)
ARGV[1]  now ms or ''  ARGV[2]  work group   ARGV[3]  consumer (the claiming worker)
ARGV[4]  min idle ms   ARGV[5]  cursor       ARGV[6]  max entries to claim
ARGV[7]  key prefix of request records and reply streams
ARGV[8]  record TTL ms ARGV[9]  reply MAXLEN ~   ARGV[10] reply TTL ms

Reply: {next_cursor, {{id, {field, value, ...}, deliveries}, ...}, vanished_count}
  deliveries = earlier requeued deliveries + times this entry has now been delivered
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  'COUNT', ARGV[6])
local claimed = {}
for _, entry in ipairs(res[2]) do
  local id, f = entry[1], entry[2]
  local earlier = 0
  for i = 1, #f, 2 do
    if f[i] == 'deliveries' then earlier = tonumber(f[i + 1]) end
  end
  local pel = redis.call('XPENDING', KEYS[1], ARGV[2], id, id, 1)
  local times = 1
  if #pel > 0 then times = tonumber(pel[1][4]) end
  claimed[#claimed + 1] = {id, f, earlier + times}
end

local vanished = 0
for _, id in ipairs(res[3] or {}) do
  local rid = redis.call('HGET', KEYS[2], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  if rid then
    local rec = ARGV[7] .. 'req:' .. rid
    local status = redis.call('HGET', rec, 'status')
    if status ~= 'completed' and status ~= 'failed' and status ~= 'expired'
      and status ~= 'cancelled' then
      redis.call('HSET', rec, 'status', 'failed',
        'error', 'entry vanished from the work stream before completion', 'updated_ms', now)
      redis.call('PEXPIRE', rec, ARGV[8])
      redis.call('HINCRBY', KEYS[3], 'failed', 1)
    end
  end
  vanished = vanished + 1
end
if vanished > 0 then redis.call('HINCRBY', KEYS[3], 'vanished', vanished) end
if #claimed > 0 then redis.call('HINCRBY', KEYS[3], 'reclaimed', #claimed) end
return {res[1], claimed, vanished}
