-- A failure throttle (the same rules as the in-process one): KEYS[1] is a hash of failures (f),
-- the last failure (l) and the end of the block (b), in milliseconds of Redis's clock.
-- ARGV[1] "attempt" | "failed" | "take_back" | "forget"; for attempt and failed: free failures,
-- base delay, max delay, forget after (ms).
-- attempt returns the wait in ms (0: let through, counted as a failure); failed (the attempt let
-- through earlier has failed) restarts the delay its failure earned from now. Held to the Rust
-- rules (actors/src/throttle.rs) by tests/api/seam_contract/throttle.rs.
local op = ARGV[1]
if op == 'forget' then redis.call('DEL', KEYS[1]) return 0 end
if op == 'take_back' then
  if tonumber(redis.call('HGET', KEYS[1], 'f') or '0') > 0 then redis.call('HINCRBY', KEYS[1], 'f', -1) end
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local free, base, max, forget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local blocked = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
if op == 'failed' then
  -- A key never let through is left alone; otherwise its failures are remembered from now (also
  -- while still free), and a delay it earned runs from now.
  local failures = redis.call('HGET', KEYS[1], 'f')
  if not failures then return 0 end
  failures = tonumber(failures)
  if failures >= free then
    local delay = math.min(base * 2 ^ math.min(failures - free, 31), max)
    if now + delay > blocked then blocked = now + delay end
  end
  local last = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
  if now > last then last = now end
  redis.call('HSET', KEYS[1], 'l', string.format('%d', last), 'b', string.format('%d', blocked))
  redis.call('PEXPIRE', KEYS[1], forget + max)
  return 0
end
if blocked > now then return blocked - now end
local failures = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'l') or string.format('%d', now))
if now - last > forget then failures = 0 end
failures = failures + 1
if failures >= free then
  local delay = math.min(base * 2 ^ math.min(failures - free, 31), max)
  if now + delay > blocked then blocked = now + delay end
end
redis.call('HSET', KEYS[1], 'f', failures, 'l', string.format('%d', now), 'b', string.format('%d', blocked))
redis.call('PEXPIRE', KEYS[1], forget + max)
return 0
