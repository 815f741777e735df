//! The Lua scripts: each runs atomically on Redis (see the crate docs for the key layout).

/// Atomically: refuse a publisher id still in use by a retained entry, append, trim, index.
/// KEYS: stream, pubids, latest, pubids scan cursor, this node's subscriber hash. ARGV:
/// publisher id or '', max len or '', max age ms or '', topic count n, n topics, then a
/// subscriber hash change (`'set'`, `'del'` or `''`; field; value; TTL ms), then the entry's
/// field/value pairs.
///
/// Trimming cannot tell which publisher ids it dropped, so each publish that records one also
/// looks at a few more entries of the pubids hash (`HSCAN`, resuming where the last one
/// stopped) and deletes those whose update is older than the stream's first entry. The hash
/// then stays about as large as what is retained instead of growing forever.
pub(crate) const PUBLISH_LUA: &str = r#"
local pid = ARGV[1]
if pid ~= '' then
  local old = redis.call('HGET', KEYS[2], pid)
  if old and #redis.call('XRANGE', KEYS[1], old, old) > 0 then
    return redis.error_reply('SSEHUB_DUPLICATE_ID id is already used by a retained update')
  end
end
local n = tonumber(ARGV[4])
local fields = {}
for i = 9 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
local id
if ARGV[2] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
else
  id = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
if ARGV[3] ~= '' then
  local t = redis.call('TIME')
  local minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
  if minid > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', minid))
  end
end
if pid ~= '' then
  redis.call('HSET', KEYS[2], pid, id)
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #first > 0 then
    local f_ms, f_seq = string.match(first[1][1], '(%d+)-(%d+)')
    f_ms, f_seq = tonumber(f_ms), tonumber(f_seq)
    local scan = redis.call('HSCAN', KEYS[2], redis.call('GET', KEYS[4]) or '0', 'COUNT', 16)
    redis.call('SET', KEYS[4], scan[1])
    local kv = scan[2]
    for i = 1, #kv, 2 do
      local ms, seq = string.match(kv[i + 1], '(%d+)-(%d+)')
      ms, seq = tonumber(ms), tonumber(seq)
      if ms and (ms < f_ms or (ms == f_ms and seq < f_seq)) then
        redis.call('HDEL', KEYS[2], kv[i])
      end
    end
  end
end
local copy = cjson.encode({id, unpack(fields)})
for i = 5, 4 + n do redis.call('HSET', KEYS[3], ARGV[i], copy) end
local op = ARGV[5 + n]
if op == 'set' then
  redis.call('HSET', KEYS[5], ARGV[6 + n], ARGV[7 + n])
  redis.call('PEXPIRE', KEYS[5], ARGV[8 + n])
elseif op == 'del' then
  redis.call('HDEL', KEYS[5], ARGV[6 + n])
end
return id
"#;

/// Writes this node's presence counts and returns the other live nodes' counts as flat
/// `field, count` pairs (field `''` is a node's subscriber total; selectors are never empty).
/// The first element says whether this node's subscriber hash (KEYS[2]) still existed when its
/// TTL was renewed (`1`/`0`).
/// KEYS: the nodes sorted set, this node's subscriber hash. ARGV: node id, TTL ms, presence key
/// prefix, subscriber total, then selector/count pairs. The per-node keys are derived here (a
/// single Redis, not Cluster).
pub(crate) const PRESENCE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local mine = ARGV[3] .. ARGV[1]
redis.call('DEL', mine)
redis.call('HSET', mine, '', ARGV[4])
for i = 5, #ARGV, 2 do redis.call('HSET', mine, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', mine, ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
local out = {tostring(redis.call('PEXPIRE', KEYS[2], ttl))}
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if node ~= ARGV[1] then
    local h = redis.call('HGETALL', ARGV[3] .. node)
    for i = 1, #h do out[#out + 1] = h[i] end
  end
end
return out
"#;

/// The subscriptions of every live node and the stream's last generated id, atomically: the
/// first element is the id (`''` without a stream), then every subscriber's JSON.
/// KEYS: the nodes sorted set, the stream. ARGV: subscriber hash prefix, this node's id.
pub(crate) const SUBSCRIPTIONS_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {''}
if redis.call('EXISTS', KEYS[2]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then out[1] = info[i + 1] end
  end
end
local nodes = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local mine = false
for _, node in ipairs(nodes) do if node == ARGV[2] then mine = true end end
if not mine then nodes[#nodes + 1] = ARGV[2] end
for _, node in ipairs(nodes) do
  local h = redis.call('HVALS', ARGV[1] .. node)
  for i = 1, #h do out[#out + 1] = h[i] end
end
return out
"#;

/// One consistent view for resolving a subscription: the stream's last generated id, the
/// newest id deleted by `XDEL`, its first entry (id and fields), a publisher id's stream id,
/// the retained copies, and its length and count of entries ever added (they differ once
/// trimming removed some). KEYS: stream, pubids, latest. ARGV: publisher id or '', '1' for the
/// retained copies.
pub(crate) const SNAPSHOT_LUA: &str = r#"
local out = {'', '', '', false, false, {}, 0, 0}
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    local k = info[i]
    if k == 'last-generated-id' then out[1] = info[i + 1]
    elseif k == 'max-deleted-entry-id' then out[2] = info[i + 1]
    elseif k == 'length' then out[7] = info[i + 1]
    elseif k == 'entries-added' then out[8] = info[i + 1]
    elseif k == 'first-entry' and info[i + 1] then
      out[3] = info[i + 1][1]
      out[4] = info[i + 1][2]
    end
  end
end
if ARGV[1] ~= '' then out[5] = redis.call('HGET', KEYS[2], ARGV[1]) end
if ARGV[2] == '1' then out[6] = redis.call('HGETALL', KEYS[3]) end
return out
"#;
