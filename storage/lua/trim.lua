-- trim: retention for one collection. Drops the longest prefix of the log
-- whose entries are all older than a timestamp (at most ARGV[2] entries per
-- call, so that Redis is never blocked for long) and forgets their ids.
-- KEYS: log (stream), ids (hash), meta (hash)
-- ARGV: before (ms), most entries to look at
-- Returns {entries dropped, 1 if the caller should call again else 0}.
local log, ids, meta = KEYS[1], KEYS[2], KEYS[3]
local before = tonumber(ARGV[1])
local most = tonumber(ARGV[2])
local entries = redis.call('XRANGE', log, '-', '+', 'COUNT', most)
local dropped = 0
local keep_from = nil
for _, entry in ipairs(entries) do
  local fields = entry[2]
  local ts, id
  for j = 1, #fields, 2 do
    if fields[j] == 't' then ts = tonumber(fields[j + 1])
    elseif fields[j] == 'i' then id = fields[j + 1] end
  end
  if ts >= before then
    keep_from = tonumber(string.match(entry[1], '^(%d+)'))
    break
  end
  redis.call('HDEL', ids, id)
  dropped = dropped + 1
end
if dropped == 0 then return {0, 0} end
if not keep_from then
  keep_from = tonumber(string.match(entries[#entries][1], '^(%d+)')) + 1
end
local first = string.format('%d', keep_from)
redis.call('XTRIM', log, 'MINID', first .. '-0')
redis.call('HSET', meta, 'first', first)
if dropped == most then return {dropped, 1} end
return {dropped, 0}
