-- save: stores a batch of events in one collection, atomically.
-- KEYS: log (stream), docs (hash), ids (hash), meta (hash)
-- ARGV: strategy ('0' last-write-wins, '1' server-wins, '2' client-wins),
--       node (the saving broker's id), new epoch (used if the collection has
--       none), channel, event count, most entries the log keeps (0: no
--       limit; older ones are trimmed with their ids), then 9 strings per
--       event:
--       id, type (1 insert, 2 update, 3 delete), document id, data,
--       timestamp ms, hlc (20 digits, zero-padded), client id, base seq, origin
-- Returns {epoch, last seq before the batch, then two values per event}:
--   1, seq: accepted; 2, seq: duplicate; 3, current version or '': conflict.
-- A document version is "<seq>,<hlc>,<deleted 0/1>,<#client>,<client><data>".
local log, docs, ids, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local strategy, node, channel = ARGV[1], ARGV[2], ARGV[4]

redis.call('HSETNX', meta, 'epoch', ARGV[3])
local head = redis.call('HMGET', meta, 'epoch', 'last', 'first')
local epoch = head[1]
local last = tonumber(head[2] or '0')
local first = tonumber(head[3] or '1')
local before = last

local function bytes_greater(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

local function parse_version(v)
  local seq, hlc, _, client_len, pos = string.match(v, '^(%d+),(%d+),(%d),(%d+),()')
  return seq, hlc, string.sub(v, pos, pos + tonumber(client_len) - 1)
end

-- hlcs are equal-length digit strings: comparing them as strings is exact,
-- where Lua numbers (doubles) would round above 2^53.
local function passes(current, hlc, client, base)
  if strategy == '2' then return true end
  if strategy == '1' then
    if not current then return base == '0' end
    local seq = parse_version(current)
    return base == seq
  end
  if not current then return true end
  local _, current_hlc, current_client = parse_version(current)
  if hlc ~= current_hlc then return hlc > current_hlc end
  return bytes_greater(client, current_client)
end

local out = {epoch, before}
local count = tonumber(ARGV[5])
local max_log = tonumber(ARGV[6])
for i = 0, count - 1 do
  local a = 6 + i * 9
  local id, kind, doc, data = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local ts, hlc, client, base, origin = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9]
  local seen = redis.call('HGET', ids, id)
  if seen then
    out[#out + 1] = 2
    out[#out + 1] = tonumber(seen)
  else
    local current = redis.call('HGET', docs, doc)
    if not passes(current, hlc, client, base) then
      out[#out + 1] = 3
      out[#out + 1] = current or ''
    else
      last = last + 1
      local seq = string.format('%d', last)
      redis.call('XADD', log, seq .. '-0', 'i', id, 'y', kind, 'd', doc, 'b', data, 't', ts,
                 'h', hlc, 'c', client, 's', base, 'o', origin, 'n', node)
      redis.call('HSET', ids, id, seq)
      local deleted = kind == '3'
      redis.call('HSET', docs, doc, seq .. ',' .. hlc .. ',' .. (deleted and '1' or '0') .. ',' ..
                 #client .. ',' .. client .. (deleted and '' or data))
      out[#out + 1] = 1
      out[#out + 1] = last
    end
  end
end
-- Trimming by seq: what this batch pushed past max_log goes, oldest first
-- (bounded by the batch size, so Redis is never blocked for long).
local function trim_to(max)
  if max == 0 or last - first + 1 <= max then return end
  local keep_from = last - max + 1
  local dropped = redis.call('XRANGE', log, '-', '(' .. string.format('%d', keep_from) .. '-0')
  for _, entry in ipairs(dropped) do
    local fields = entry[2]
    for j = 1, #fields, 2 do
      if fields[j] == 'i' then redis.call('HDEL', ids, fields[j + 1]) break end
    end
  end
  redis.call('XTRIM', log, 'MINID', string.format('%d', keep_from) .. '-0')
  redis.call('HSET', meta, 'first', string.format('%d', keep_from))
end

if last > before then
  trim_to(max_log)
  local seq = string.format('%d', last)
  redis.call('HSET', meta, 'last', seq)
  redis.call('PUBLISH', channel, epoch .. ' ' .. seq .. ' ' .. node)
end
return out
