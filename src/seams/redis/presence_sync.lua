-- Sets this node's sessions of some users and tells every node's admins what changed globally.
-- Atomic, so every node sees one order of changes and the counts always add up.
--
-- KEYS: none are passed by name; every key is under the {sb} hash tag (one slot).
-- ARGV[1]  this node
-- ARGV[2]  "delta": only the users given change;
--          "full:<reason>": the users given are the node's whole state; users the node listed
--          before and not now leave with <reason>
-- ARGV[3…] groups of 5: user id, sessions on this node, start of the oldest (ms), email,
--          leave reason ("" when a session opened)
-- Returns {active users, sessions} over every node.
local node = ARGV[1]
local node_users = '{sb}:n:' .. node .. ':u'
local node_info = '{sb}:n:' .. node .. ':i'

local function apply(user, count, since, email, reason)
  local old = tonumber(redis.call('HGET', node_users, user) or '0')
  if count == old then return end
  local change = count - old
  local total = redis.call('HINCRBY', '{sb}:users', user, change)
  redis.call('INCRBY', '{sb}:sessions', change)
  if count == 0 then
    redis.call('HDEL', node_users, user)
    redis.call('HDEL', node_info, user)
  else
    redis.call('HSET', node_users, user, count)
    redis.call('HSET', node_info, user, since .. ' ' .. email)
  end
  local event
  if total <= 0 then
    redis.call('HDEL', '{sb}:users', user)
    event = {type = 'left', user_id = user, email = email, reason = reason ~= '' and reason or 'closed'}
  elseif total == change then
    event = {type = 'joined', user_id = user, email = email, sessions = total, since = tonumber(since)}
  else
    event = {type = 'sessions', user_id = user, sessions = total}
  end
  redis.call('PUBLISH', '{sb}:presence', cjson.encode(event))
end

local mode = ARGV[2]
if string.sub(mode, 1, 5) == 'full:' then
  local listed = {}
  for i = 3, #ARGV, 5 do listed[ARGV[i]] = true end
  local gone_reason = string.sub(mode, 6)
  for _, user in ipairs(redis.call('HKEYS', node_users)) do
    if not listed[user] then
      local info = redis.call('HGET', node_info, user) or '0 '
      local email = string.match(info, '^%d+ (.*)$') or ''
      apply(user, 0, '0', email, gone_reason)
    end
  end
end
for i = 3, #ARGV, 5 do
  apply(ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
end
return {redis.call('HLEN', '{sb}:users'), tonumber(redis.call('GET', '{sb}:sessions') or '0')}
