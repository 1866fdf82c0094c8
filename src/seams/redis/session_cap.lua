-- The per-user session cap over every node. Each node counts its own places in a hash; a
-- reserve sums the user's places on every listed node and takes one if there is room. Held to the
-- in-process cap's rules by tests/api/seam_contract/session_cap.rs.
--
-- ARGV[1] this node, ARGV[2] "reserve" | "release" | "sync", then:
--   reserve: user, max             -> 1 taken, 0 full
--   release: user                  -> 0
--   sync:    user, count, …        -> 0 (the node's whole state, replacing what was there)
local node = ARGV[1]
local mine = '{sb}:n:' .. node .. ':c'
local op = ARGV[2]
if op == 'reserve' then
  local user, max = ARGV[3], tonumber(ARGV[4])
  local total = tonumber(redis.call('HGET', mine, user) or '0')
  for _, other in ipairs(redis.call('ZRANGE', '{sb}:nodes', 0, -1)) do
    if other ~= node then
      total = total + tonumber(redis.call('HGET', '{sb}:n:' .. other .. ':c', user) or '0')
    end
  end
  if total >= max then return 0 end
  redis.call('HINCRBY', mine, ARGV[3], 1)
  return 1
elseif op == 'release' then
  if redis.call('HINCRBY', mine, ARGV[3], -1) <= 0 then redis.call('HDEL', mine, ARGV[3]) end
  return 0
elseif op == 'sync' then
  redis.call('DEL', mine)
  for i = 3, #ARGV, 2 do redis.call('HSET', mine, ARGV[i], ARGV[i + 1]) end
  return 0
end
return redis.error_reply('unknown operation')
