-- read: the head of a collection and its events after a seq.
-- KEYS: log (stream), meta (hash)
-- ARGV: new epoch (used if the collection has none), after seq, limit,
--       '1' to leave out the events of one client (then ARGV[5]) or '0'
-- Returns {epoch, first, last, complete (1/0), stream entries...}; complete
-- is 0 when a wanted event remains past the limit.
local log, meta = KEYS[1], KEYS[2]
redis.call('HSETNX', meta, 'epoch', ARGV[1])
local head = redis.call('HMGET', meta, 'epoch', 'last', 'first')
local last = tonumber(head[2] or '0')
local first = tonumber(head[3] or '1')
local after = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local exclude = ARGV[4] == '1'
local client = ARGV[5]
local out = {head[1], first, last, 1}
if after >= last then return out end

local function wanted(entry)
  if not exclude then return true end
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'c' then return fields[j + 1] ~= client end
  end
  return true
end

local taken = 0
local start = string.format('%d', math.max(after + 1, first)) .. '-0'
while true do
  local want = math.min(256, limit - taken + 1)
  local chunk = redis.call('XRANGE', log, start, '+', 'COUNT', want)
  for _, entry in ipairs(chunk) do
    if wanted(entry) then
      if taken >= limit then
        out[4] = 0
        return out
      end
      out[#out + 1] = entry
      taken = taken + 1
    end
  end
  if #chunk < want then return out end
  start = '(' .. chunk[#chunk][1]
end
