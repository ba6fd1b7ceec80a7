--[[ adjust_token_budget: settle a tenant's token budget once the backend reported its usage.

Admission reserved estimated prompt tokens + max_tokens; the worker then knows the real
usage and returns the difference (refund, delta > 0) or takes the excess (charge, delta < 0).
The bucket never holds more than a minute's budget; a charge may take it below zero, which
the next admissions wait out.

KEYS[1]  tenant token bucket (hash: tokens, ts)
ARGV[1]  now ms or ''   ARGV[2]  delta in tokens   ARGV[3]  tokens per minute (bucket size)

Reply: tokens in the bucket after the adjustment (floored)
]]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local tpm = tonumber(ARGV[3])
if tpm <= 0 then return 0 end
local rate = tpm / 60000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if not tokens or not ts then tokens = tpm else
  tokens = math.min(tpm, tokens + math.max(0, now - ts) * rate)
end
tokens = math.min(tpm, tokens + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 61000)
return math.floor(tokens)
