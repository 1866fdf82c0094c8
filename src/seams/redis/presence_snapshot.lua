-- Everyone online on every node: per user, sessions summed and the oldest start.
-- Returns a flat list: user id, email, sessions, since (ms), …
local users = {}
local order = {}
for _, node in ipairs(redis.call('ZRANGE', '{sb}:nodes', 0, -1)) do
  local counts = redis.call('HGETALL', '{sb}:n:' .. node .. ':u')
  for i = 1, #counts, 2 do
    local user, count = counts[i], tonumber(counts[i + 1])
    local info = redis.call('HGET', '{sb}:n:' .. node .. ':i', user) or '0 '
    local since, email = string.match(info, '^(%d+) (.*)$')
    since = tonumber(since) or 0
    local entry = users[user]
    if entry then
      entry.sessions = entry.sessions + count
      if since < entry.since then entry.since = since end
    else
      users[user] = {email = email or '', sessions = count, since = since}
      table.insert(order, user)
    end
  end
end
local out = {}
for _, user in ipairs(order) do
  local e = users[user]
  table.insert(out, user)
  table.insert(out, e.email)
  table.insert(out, e.sessions)
  table.insert(out, string.format('%d', e.since))
end
return out
