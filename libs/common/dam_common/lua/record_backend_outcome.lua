--[[ record_backend_outcome: the workers' circuit breaker on the LLM backend.

A success closes the circuit and zeroes the failure count. A transient failure counts; at the
threshold the circuit opens for the cooldown, and the ingress then answers 503 at once
instead of filling the backlog with work that cannot run. When the cooldown ends, requests
flow again (half-open): one more failure run reopens it.

KEYS[1]  consecutive failures (string counter)   KEYS[2]  circuit (string with TTL)
ARGV[1]  'ok' or 'fail'   ARGV[2]  failures that open the circuit   ARGV[3]  cooldown ms

Reply: 1 if this call opened the circuit, else 0
]]
if ARGV[1] == 'ok' then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 0
end
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 4)
if failures >= tonumber(ARGV[2]) and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], 'open', 'PX', ARGV[3])
  redis.call('SET', KEYS[1], 0, 'PX', tonumber(ARGV[3]) * 4)
  return 1
end
return 0
