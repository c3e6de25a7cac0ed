/* The Lua scripts the Redis store runs: each commit is one script, so that
 * the ids, the stream entries, the channel's counters and the bus message
 * happen together or not at all, in one order every node sees.
 *
 * Keys of a channel C (names are validated: no spaces, no braces):
 *   fc:s:C  a stream of its events; entry id "<seq>-0", fields n (ordinal),
 *           t (ms), e (event name), d (data), f (from), j ("1": data is JSON)
 *   fc:m:C  a hash: n (last ordinal), first (id of its first event since the
 *           last purge, 0 after one), last (its last id)
 *   fc:seq  the cluster's id counter; fc:channels  a sorted set of names.
 * A commit's bus message goes to the Pub/Sub channel fc:bus:<db>:C: "E <s0> <n0> <ms> <k> <len> <channel>" then,
 * for each event, " <len(e)> <len(d)> <len(f)> <j> <e><d><f>"; of a purge:
 * "P <last id it covers> <len> <channel>". */
#ifndef FC_STORE_REDIS_LUA_H
#define FC_STORE_REDIS_LUA_H

/* KEYS: stream, meta, fc:seq, fc:channels, fc:epoch. ARGV: channel, MAXLEN,
 * the bus prefix (the message goes to prefix .. channel), max age in s (0:
 * none), the epoch the node knows, then name, data, from, json for each
 * event. Refused with FCEPOCH when fc:epoch is not the node's (Redis lost
 * its data: the node seeds the counters again first, FC_REDIS_RESEED_LUA). Deletes the
 * channel's events past the age (a quiet channel's on its next commit; reads
 * skip them meanwhile). Returns {first id, first ordinal, time in ms}. */
#define FC_REDIS_APPEND_LUA                                                                                            \
  "if redis.call('GET', KEYS[5]) ~= ARGV[5] then return redis.error_reply('FCEPOCH') end\n"                            \
  "local k = (#ARGV - 5) / 4\n"                                                                                        \
  "local t = redis.call('TIME')\n"                                                                                     \
  "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                                            \
  "local n1 = redis.call('HINCRBY', KEYS[2], 'n', k)\n"                                                                \
  "local s1 = redis.call('INCRBY', KEYS[3], k)\n"                                                                      \
  "local n0, s0 = n1 - k + 1, s1 - k + 1\n"                                                                            \
  "local first = redis.call('HGET', KEYS[2], 'first')\n"                                                               \
  "if not first or first == '0' then redis.call('HSET', KEYS[2], 'first', s0) end\n"                                   \
  "local f = string.format\n"                                                                                          \
  "local out = {f('E %d %d %d %d %d ', s0, n0, now, k, #ARGV[1]), ARGV[1]}\n"                                          \
  "for i = 0, k - 1 do\n"                                                                                              \
  "  local b = 6 + i * 4\n"                                                                                            \
  "  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], f('%d-0', s0 + i), 'n', f('%d', n0 "                          \
  "+ i),\n"                                                                                                            \
  "             't', f('%d', now), 'e', ARGV[b], 'd', ARGV[b + 1], 'f', ARGV[b + 2], 'j', "                            \
  "ARGV[b + 3])\n"                                                                                                     \
  "  out[#out + 1] = f(' %d %d %d %s ', #ARGV[b], #ARGV[b + 1], #ARGV[b + 2], ARGV[b + 3])\n"                          \
  "  out[#out + 1] = ARGV[b] .. ARGV[b + 1] .. ARGV[b + 2]\n"                                                          \
  "end\n"                                                                                                              \
  "local age = tonumber(ARGV[4])\n"                                                                                    \
  "if age > 0 then\n"                                                                                                  \
  "  for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)) do\n"                                   \
  "    if tonumber(e[2][4]) >= now - age * 1000 then break end\n"                                                      \
  "    redis.call('XDEL', KEYS[1], e[1])\n"                                                                            \
  "  end\n"                                                                                                            \
  "end\n"                                                                                                              \
  "redis.call('HSET', KEYS[2], 'last', f('%d', s1))\n"                                                                 \
  "redis.call('ZADD', KEYS[4], 0, ARGV[1])\n"                                                                          \
  "redis.call('PUBLISH', ARGV[3] .. ARGV[1], table.concat(out))\n"                                                     \
  "return {s0, n0, now}\n"

/* KEYS: stream, meta, fc:seq, fc:epoch. ARGV: channel, bus prefix, epoch
 * (as above). Returns the last id the
 * purge covers (events after it, committed later, stay). Ordinals and ids go
 * on after it. */
#define FC_REDIS_PURGE_LUA                                                                                             \
  "if redis.call('GET', KEYS[4]) ~= ARGV[3] then return redis.error_reply('FCEPOCH') end\n"                            \
  "local upto = redis.call('GET', KEYS[3]) or '0'\n"                                                                   \
  "redis.call('DEL', KEYS[1])\n"                                                                                       \
  "if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'first', 0) end\n"                           \
  "redis.call('PUBLISH', ARGV[2] .. ARGV[1], 'P ' .. upto .. ' ' .. #ARGV[1] .. ' ' .. ARGV[1])\n"                     \
  "return tonumber(upto)\n"

/* After Redis lost its data: raises fc:seq to at least ARGV[1] and each
 * channel's last ordinal to at least what the node has, ARGV pairs (name,
 * ordinal) from ARGV[2], so that ids and ordinals go on increasing. */
#define FC_REDIS_RESEED_LUA                                                                                            \
  "local seq = tonumber(redis.call('GET', 'fc:seq') or '0')\n"                                                         \
  "if seq < tonumber(ARGV[1]) then redis.call('SET', 'fc:seq', ARGV[1]) end\n"                                         \
  "for i = 2, #ARGV, 2 do\n"                                                                                           \
  "  local k = 'fc:m:' .. ARGV[i]\n"                                                                                   \
  "  local n = tonumber(redis.call('HGET', k, 'n') or '0')\n"                                                          \
  "  if n < tonumber(ARGV[i + 1]) then redis.call('HSET', k, 'n', ARGV[i + 1]) end\n"                                  \
  "end\n"                                                                                                              \
  "return 1\n"

#endif
