--[[ replay_dead_letter: move one dead-lettered entry back to the intake stream.

An operator's decision: the request gets a fresh set of deliveries and waits in the backlog
again, in its tenant's queue (admission caps do not apply). Its record returns to `queued`,
so a client polling GET /v1/requests/{id} sees it resolve.

KEYS[1]  dead-letter stream   KEYS[2]  intake stream   KEYS[3]  request record
KEYS[4]  scheduler tenants (hash)   KEYS[5]  scheduler ring (list)
ARGV[1]  now ms or ''         ARGV[2]  dead-letter id  ARGV[3]  new deadline ms
ARGV[4]  record TTL ms        ARGV[5]  key base of the pipeline (tenant queues hang off it)
No MAXLEN here: a replay may exceed the backlog cap, and trimming must never drop it.
The request keeps its id (the client holds it) and is indexed under a fresh intake id.

Reply: {0, intake id, rid} replayed, {1} no such dead-letter entry
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #found == 0 then return {1} end
local f = found[1][2]
local flat = {}
local rid, tenant, prio, weight = '', 'default', '0', '1'
for i = 1, #f, 2 do
  local k, v = f[i], f[i + 1]
  if k == 'rid' then rid = v end
  if k == 'tenant' then tenant = v end
  if k == 'prio' then prio = v end
  if k == 'weight' then weight = v end
  if k ~= 'deliveries' and k ~= 'last_error' and k ~= 'deadline_ms' then
    flat[#flat + 1] = k; flat[#flat + 1] = v
  end
end
local id = redis.call('XADD', KEYS[2], '*', 'deadline_ms', ARGV[3],
  unpack(flat))
local ms, seq = string.match(id, '^(%d+)-(%d+)$')
redis.call('ZADD', ARGV[5] .. 'queue:' .. tenant .. ':' .. prio,
  tonumber(ms) * 1024 + math.min(tonumber(seq), 1023), id)
if redis.call('HSETNX', KEYS[4], tenant, weight) == 1 then redis.call('RPUSH', KEYS[5], tenant) end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[3], 'status', 'queued', 'replayed_ms', now, 'updated_ms', now)
redis.call('HDEL', KEYS[3], 'error', 'dlq_id')
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {0, id, rid}
