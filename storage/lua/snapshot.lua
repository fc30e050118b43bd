-- snapshot: every document version of a collection with the head it matches.
-- KEYS: docs (hash), meta (hash)
-- ARGV: new epoch (used if the collection has none)
-- Returns {epoch, first, last, {id, version, id, version, ...}}.
local docs, meta = KEYS[1], KEYS[2]
redis.call('HSETNX', meta, 'epoch', ARGV[1])
local head = redis.call('HMGET', meta, 'epoch', 'last', 'first')
return {head[1], tonumber(head[3] or '1'), tonumber(head[2] or '0'), redis.call('HGETALL', docs)}
