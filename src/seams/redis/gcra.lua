-- One GCRA check (the same arithmetic as the in-process limiter): KEYS[1] holds the theoretical
-- arrival time in microseconds of Redis's clock.
-- ARGV[1] microseconds per request (window / limit), ARGV[2] limit (the burst)
-- Returns {allowed 1|0, remaining, retry after (µs), reset after (µs)}. Held to the Rust rules
-- (actors/src/rate_limit.rs, governor's GCRA) by tests/api/seam_contract/limiter.rs.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tau = period * limit
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + period
local allow_at = next_tat - tau
if now < allow_at then
  return {0, 0, string.format('%d', allow_at - now), string.format('%d', tau)}
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
local remaining = math.floor((now + tau - next_tat) / period)
return {1, remaining, '0', string.format('%d', period * (limit - remaining))}
