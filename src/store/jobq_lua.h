/* The scripts of jobq_redis.c: each runs atomically in Redis, so that two
 * nodes never both take a job, end a lease's jobs, or pass a cap. */
#ifndef FC_STORE_JOBQ_LUA_H
#define FC_STORE_JOBQ_LUA_H

/* Lists a record under its workflow and drops that workflow's oldest past
 * FC_JOBQ_KEEP (ARGV[1] of the callers below is the id, ARGV[2] the
 * workflow). */
#define JOBQ_LUA_INDEX                                                                                                 \
  "local KEEP = 10000\n" /* FC_JOBQ_KEEP */                                                                            \
  "local function index(id, wf, created)\n"                                                                            \
  "  local z = 'fc:jobs:' .. wf\n"                                                                                     \
  "  redis.call('ZADD', z, created, id)\n"                                                                             \
  "  local n = redis.call('ZCARD', z)\n"                                                                               \
  "  if n > KEEP then\n"                                                                                               \
  "    for _, o in ipairs(redis.call('ZRANGE', z, 0, n - KEEP - 1)) do redis.call('DEL', 'fc:job:' .. o) end\n"        \
  "    redis.call('ZREMRANGEBYRANK', z, 0, n - KEEP - 1)\n"                                                            \
  "  end\n"                                                                                                            \
  "end\n"

/* ARGV: id, wf, final (0|1), then field, value pairs. */
#define JOBQ_LUA_SAVE                                                                                                  \
  JOBQ_LUA_INDEX                                                                                                       \
  "local id, wf = ARGV[1], ARGV[2]\n"                                                                                  \
  "local k = 'fc:job:' .. id\n"                                                                                        \
  "redis.call('HSET', k, unpack(ARGV, 4))\n"                                                                           \
  "index(id, wf, redis.call('HGET', k, 'created') or 0)\n"                                                             \
  "if ARGV[3] == '1' and redis.call('HDEL', 'fc:running', id) == 1 then\n"                                             \
  "  redis.call('HINCRBY', 'fc:wfrun', wf, -1)\n"                                                                      \
  "end\n"                                                                                                              \
  "return 1\n"

/* ARGV: id, wf, max queued (0: none), then field, value pairs. 0: full. */
#define JOBQ_LUA_CREATE                                                                                                \
  JOBQ_LUA_INDEX                                                                                                       \
  "local id, wf, cap = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"                                                          \
  "if cap > 0 and redis.call('LLEN', 'fc:jobq') >= cap then return 0 end\n"                                            \
  "local k = 'fc:job:' .. id\n"                                                                                        \
  "redis.call('HSET', k, unpack(ARGV, 4))\n"                                                                           \
  "local created = redis.call('HGET', k, 'created') or 0\n"                                                            \
  "index(id, wf, created)\n"                                                                                           \
  "redis.call('ZADD', 'fc:unq', created, id)\n"                                                                        \
  "return 1\n"

/* ARGV: node. The oldest queued job whose workflow has room, or false.
 * Looks at the first 256 queued jobs: past them a full workflow's jobs may
 * hold others back until its jobs end. */
#define JOBQ_LUA_CLAIM                                                                                                 \
  "for _, id in ipairs(redis.call('LRANGE', 'fc:jobq', 0, 255)) do\n"                                                  \
  "  local k = 'fc:job:' .. id\n"                                                                                      \
  "  local wf, max = unpack(redis.call('HMGET', k, 'wf', 'max'))\n"                                                    \
  "  if not wf then\n"                                                                                                 \
  "    redis.call('LREM', 'fc:jobq', 1, id)\n"                                                                         \
  "  else\n"                                                                                                           \
  "    max = tonumber(max) or 0\n"                                                                                     \
  "    if max == 0 or (tonumber(redis.call('HGET', 'fc:wfrun', wf)) or 0) < max then\n"                                \
  "      redis.call('LREM', 'fc:jobq', 1, id)\n"                                                                       \
  "      redis.call('HINCRBY', 'fc:wfrun', wf, 1)\n"                                                                   \
  "      redis.call('HSET', 'fc:running', id, ARGV[1])\n"                                                              \
  "      redis.call('HSET', k, 'node', ARGV[1])\n"                                                                     \
  "      return id\n"                                                                                                  \
  "    end\n"                                                                                                          \
  "  end\n"                                                                                                            \
  "end\n"                                                                                                              \
  "return false\n"

/* ARGV: id, swept (0|1: the caller took it from JOBQ_LUA_STRANDED). 1:
 * queued; 0: a stop came first (the job's "cancel" field); 2: a sweep took
 * the job over (it queues it). */
#define JOBQ_LUA_PUSH                                                                                                  \
  "local k = 'fc:job:' .. ARGV[1]\n"                                                                                   \
  "if redis.call('ZREM', 'fc:unq', ARGV[1]) == 0 and ARGV[2] ~= '1' and redis.call('HGET', k, 'swept') then\n"         \
  "  return 2\n"                                                                                                       \
  "end\n"                                                                                                              \
  "if redis.call('HGET', k, 'cancel') then return 0 end\n"                                                             \
  "redis.call('RPUSH', 'fc:jobq', ARGV[1])\n"                                                                          \
  "return 1\n"

/* ARGV: before (ms). Takes over at most 64 Pending jobs created before it
 * and never queued (their node died or lost Redis in between): marks them
 * "swept" and returns their ids. */
#define JOBQ_LUA_STRANDED                                                                                              \
  "local out = {}\n"                                                                                                   \
  "for _, id in ipairs(redis.call('ZRANGEBYSCORE', 'fc:unq', '-inf', ARGV[1], 'LIMIT', 0, 64)) do\n"                   \
  "  redis.call('ZREM', 'fc:unq', id)\n"                                                                               \
  "  local k = 'fc:job:' .. id\n"                                                                                      \
  "  if redis.call('HGET', k, 'status') == 'Pending' then\n"                                                           \
  "    redis.call('HSET', k, 'swept', '1')\n"                                                                          \
  "    out[#out + 1] = id\n"                                                                                           \
  "  end\n"                                                                                                            \
  "end\n"                                                                                                              \
  "return out\n"

/* ARGV: id. 1: taken out of the queue; 2: not queued yet, marked so that
 * it never is; 0: claimed by a node. */
#define JOBQ_LUA_UNQUEUE                                                                                               \
  "if redis.call('LREM', 'fc:jobq', 1, ARGV[1]) == 1 then return 1 end\n"                                              \
  "local k = 'fc:job:' .. ARGV[1]\n"                                                                                   \
  "if redis.call('HGET', k, 'node') then return 0 end\n"                                                               \
  "redis.call('HSET', k, 'cancel', '1')\n"                                                                             \
  "return 2\n"

/* ARGV: now (ms). Fails the claimed jobs of nodes whose lease ended;
 * returns their ids. */
#define JOBQ_LUA_SWEEP                                                                                                 \
  "local out, r = {}, redis.call('HGETALL', 'fc:running')\n"                                                           \
  "for i = 1, #r, 2 do\n"                                                                                              \
  "  local id, node = r[i], r[i + 1]\n"                                                                                \
  "  if redis.call('EXISTS', 'fc:node:' .. node) == 0 then\n"                                                          \
  "    local k = 'fc:job:' .. id\n"                                                                                    \
  "    local wf, st = unpack(redis.call('HMGET', k, 'wf', 'status'))\n"                                                \
  "    redis.call('HDEL', 'fc:running', id)\n"                                                                         \
  "    if wf then\n"                                                                                                   \
  "      redis.call('HINCRBY', 'fc:wfrun', wf, -1)\n"                                                                  \
  "      redis.call('HSET', k, 'status', 'Failed', 'ended', ARGV[1], 'reason', 'node ' .. node ..\n"                   \
  "                 ' was lost (its lease ended) while the job was ' .. (st or 'Running'))\n"                          \
  "      out[#out + 1] = id\n"                                                                                         \
  "    end\n"                                                                                                          \
  "  end\n"                                                                                                            \
  "end\n"                                                                                                              \
  "return out\n"

/* ARGV: node, lease ms, now ms. 1: the lease still held. */
#define JOBQ_LUA_BEAT                                                                                                  \
  "local held = redis.call('SET', 'fc:node:' .. ARGV[1], '1', 'PX', ARGV[2], 'GET')\n"                                 \
  "redis.call('ZADD', 'fc:nodes', ARGV[3] + ARGV[2], ARGV[1])\n"                                                       \
  "redis.call('ZREMRANGEBYSCORE', 'fc:nodes', '-inf', ARGV[3] - 60000)\n"                                              \
  "return held and 1 or 0\n"

/* ARGV: self, now ms, note, node. Leaves the note for `node`, or with node
 * '' for every live node but self; returns how many got it. */
#define JOBQ_LUA_NOTE                                                                                                  \
  "local function note(node)\n"                                                                                        \
  "  redis.call('RPUSH', 'fc:ctl:' .. node, ARGV[3])\n"                                                                \
  "  redis.call('EXPIRE', 'fc:ctl:' .. node, 60)\n"                                                                    \
  "end\n"                                                                                                              \
  "if ARGV[4] ~= '' then note(ARGV[4]) return 1 end\n"                                                                 \
  "local n = 0\n"                                                                                                      \
  "for _, node in ipairs(redis.call('ZRANGEBYSCORE', 'fc:nodes', ARGV[2], '+inf')) do\n"                               \
  "  if node ~= ARGV[1] then\n"                                                                                        \
  "    note(node)\n"                                                                                                   \
  "    n = n + 1\n"                                                                                                    \
  "  end\n"                                                                                                            \
  "end\n"                                                                                                              \
  "return n\n"

/* ARGV: node. Ends its lease. */
#define JOBQ_LUA_LEAVE                                                                                                 \
  "redis.call('DEL', 'fc:node:' .. ARGV[1])\n"                                                                         \
  "redis.call('ZREM', 'fc:nodes', ARGV[1])\n"                                                                          \
  "return 1\n"

/* ARGV: wf, hash, force (0|1). Stores the hash (always, or when none is);
 * returns the stored one. */
#define JOBQ_LUA_DEF                                                                                                   \
  "redis.call(ARGV[3] == '1' and 'HSET' or 'HSETNX', 'fc:wfdef', ARGV[1], ARGV[2])\n"                                  \
  "return redis.call('HGET', 'fc:wfdef', ARGV[1])\n"

/* ARGV: wf, after id ('' for none), limit. {more, id1, id2, ...}; false when
 * `after` is not listed. */
#define JOBQ_LUA_PAGE                                                                                                  \
  "local z, from = 'fc:jobs:' .. ARGV[1], 0\n"                                                                         \
  "if ARGV[2] ~= '' then\n"                                                                                            \
  "  local r = redis.call('ZREVRANK', z, ARGV[2])\n"                                                                   \
  "  if not r then return false end\n"                                                                                 \
  "  from = r + 1\n"                                                                                                   \
  "end\n"                                                                                                              \
  "local lim = tonumber(ARGV[3])\n"                                                                                    \
  "local ids = redis.call('ZREVRANGE', z, from, from + lim)\n"                                                         \
  "local out = {#ids > lim and 1 or 0}\n"                                                                              \
  "for i = 1, math.min(#ids, lim) do out[#out + 1] = ids[i] end\n"                                                     \
  "return out\n"

#endif
