-- A node's heartbeat: marks it alive, and reaps every node silent for longer than the stale
-- time: its sessions leave with reason node_lost (or their user's count drops), its keys go.
--
-- ARGV[1] this node, ARGV[2] stale after (ms)
-- Returns {1 if this node was listed before (else it must publish its whole state again),
--          active users, sessions, nodes}.
local node = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local listed = redis.call('ZSCORE', '{sb}:nodes', node) and 1 or 0
redis.call('ZADD', '{sb}:nodes', now, node)

local dead = redis.call('ZRANGEBYSCORE', '{sb}:nodes', '-inf', '(' .. string.format('%d', now - tonumber(ARGV[2])))
for _, gone in ipairs(dead) do
  local node_users = '{sb}:n:' .. gone .. ':u'
  local node_info = '{sb}:n:' .. gone .. ':i'
  local counts = redis.call('HGETALL', node_users)
  for i = 1, #counts, 2 do
    local user, count = counts[i], tonumber(counts[i + 1])
    local info = redis.call('HGET', node_info, user) or '0 '
    local email = string.match(info, '^%d+ (.*)$') or ''
    local total = redis.call('HINCRBY', '{sb}:users', user, -count)
    redis.call('INCRBY', '{sb}:sessions', -count)
    local event
    if total <= 0 then
      redis.call('HDEL', '{sb}:users', user)
      event = {type = 'left', user_id = user, email = email, reason = 'node_lost'}
    else
      event = {type = 'sessions', user_id = user, sessions = total}
    end
    redis.call('PUBLISH', '{sb}:presence', cjson.encode(event))
  end
  redis.call('DEL', node_users, node_info, '{sb}:n:' .. gone .. ':c')
  redis.call('ZREM', '{sb}:nodes', gone)
end
return {listed, redis.call('HLEN', '{sb}:users'), tonumber(redis.call('GET', '{sb}:sessions') or '0'),
  redis.call('ZCARD', '{sb}:nodes')}
