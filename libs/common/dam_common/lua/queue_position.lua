--[[ queue_position: where a queued request stands under the fair schedule (read only).

Ahead of it: the requests of its own tenant at a higher priority or earlier at its priority
(k of them), plus, from every other tenant in the ring, as many as deficit round robin serves
that tenant while its own tenant is served k + 1 times: min(queued, (k + 1) / w * w_other).
Requests that arrive later are not foreseen: the position is what the queues hold now.

KEYS[1]  intake stream   KEYS[2]  scheduler tenants (hash: tenant -> weight)
KEYS[3]  drain window (hash: w, c, p)
ARGV[1]  now ms or ''    ARGV[2]  intake id   ARGV[3]  key base   ARGV[4]  priority levels

Reply: {0} not queued, or {1, position, drain_per_s, ahead_in_own_tenant}
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #found == 0 then return {0} end
local f = found[1][2]
local tenant, prio, weight = 'default', 0, 1
for i = 1, #f, 2 do
  if f[i] == 'tenant' then tenant = f[i + 1] end
  if f[i] == 'prio' then prio = tonumber(f[i + 1]) end
  if f[i] == 'weight' then weight = tonumber(f[i + 1]) end
end
local levels = tonumber(ARGV[4])
local function queue(t, p) return ARGV[3] .. 'queue:' .. t .. ':' .. p end

local rank = redis.call('ZRANK', queue(tenant, prio), ARGV[2])
if not rank then return {0} end
local own = rank
for p = prio + 1, levels - 1 do own = own + redis.call('ZCARD', queue(tenant, p)) end

local rounds = (own + 1) / weight
local position = own
local active = redis.call('HGETALL', KEYS[2])
for i = 1, #active, 2 do
  local other = active[i]
  if other ~= tenant then
    local queued = 0
    for p = 0, levels - 1 do queued = queued + redis.call('ZCARD', queue(other, p)) end
    position = position + math.min(queued, math.floor(rounds * tonumber(active[i + 1])))
  end
end

local drain = redis.call('HMGET', KEYS[3], 'w', 'c', 'p')
local w, sec, rate = tonumber(drain[1]) or 0, math.floor(now / 1000), 0
if w == sec then rate = tonumber(drain[3]) or 0 elseif w == sec - 1 then rate = tonumber(drain[2]) or 0 end
return {1, position, rate, own}
