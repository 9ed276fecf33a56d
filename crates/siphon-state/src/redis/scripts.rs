//! The Lua scripts behind the Redis store's steps that read and write more
//! than one key, or read before they write: Redis runs each one atomically.

use std::sync::LazyLock;

use redis::Script;

/// The value of a switch and the key it came from, the pipeline's own first.
/// KEYS: the pipeline's switches hash, then the operator's keys of the table.
/// ARGV: the field in the hash. Returns `{value, key}` or nil.
pub(super) static READ_FLAG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then return {v, KEYS[1]} end
for i = 2, #KEYS do
  v = redis.call('GET', KEYS[i])
  if v then return {v, KEYS[i]} end
end
return false
"#,
    )
});

/// As [`READ_FLAG`], and deletes what it found in the same step.
pub(super) static TAKE_FLAG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {v, KEYS[1]}
end
for i = 2, #KEYS do
  v = redis.call('GET', KEYS[i])
  if v then
    redis.call('DEL', KEYS[i])
    return {v, KEYS[i]}
  end
end
return false
"#,
    )
});

/// Saves a checkpoint unless its epoch is not 0 and older than the
/// pipeline's newest lease epoch.
/// KEYS: the checkpoints hash, the lease epoch hash. ARGV: field, JSON, epoch.
/// Returns 0 when saved, else the newest epoch that refused it.
pub(super) static SAVE_CHECKPOINT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local epoch = tonumber(ARGV[3])
if epoch > 0 then
  local newest = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0')
  if newest > epoch then return newest end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 0
"#,
    )
});

/// Opens an execution and drops the pipeline's oldest beyond the kept count.
/// KEYS: the id counter, all executions, the pipeline's executions.
/// ARGV: the execution key base, pipeline, started_at, kept. Returns the id.
pub(super) static START_EXECUTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', ARGV[1] .. id, 'pipeline', ARGV[2], 'started_at', ARGV[3], 'status', 'running')
redis.call('ZADD', KEYS[2], id, id)
redis.call('ZADD', KEYS[3], id, id)
local kept = tonumber(ARGV[4])
local n = redis.call('ZCARD', KEYS[3])
if n > kept then
  local old = redis.call('ZRANGE', KEYS[3], 0, n - kept - 1)
  for _, o in ipairs(old) do
    redis.call('DEL', ARGV[1] .. o)
    redis.call('ZREM', KEYS[2], o)
    redis.call('ZREM', KEYS[3], o)
  end
end
return id
"#,
    )
});

/// Removes a pipeline's executions, oldest first: those past its newest
/// `keep`, then those that started before the cutoff (ids grow with start
/// times, so the first one kept ends the walk).
/// KEYS: all executions, the pipeline's executions.
/// ARGV: the execution key base, the cutoff stamp (empty: none), keep (-1:
/// none). Returns how many were removed.
pub(super) static PRUNE_EXECUTIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local keep = tonumber(ARGV[3])
local removed = 0
local function drop(id)
  redis.call('DEL', ARGV[1] .. id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  removed = removed + 1
end
local n = redis.call('ZCARD', KEYS[2])
if keep >= 0 and n > keep then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, n - keep - 1)) do drop(id) end
end
if ARGV[2] ~= '' then
  while true do
    local first = redis.call('ZRANGE', KEYS[2], 0, 0)
    if #first == 0 then break end
    local at = redis.call('HGET', ARGV[1] .. first[1], 'started_at')
    if at and at >= ARGV[2] then break end
    drop(first[1])
  end
end
return removed
"#,
    )
});

/// Sets and deletes fields of a hash that exists; nothing when it does not.
/// KEYS: the hash. ARGV: the number of pairs to set, the pairs, then the
/// fields to delete. Returns 1 when the hash existed, else 0.
pub(super) static UPDATE_IF_EXISTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  redis.call('HSET', KEYS[1], ARGV[2 + 2 * i], ARGV[3 + 2 * i])
end
for i = 2 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
return 1
"#,
    )
});

/// Grants a lease (see `StateStore::acquire_lease`). A live lease is the
/// string key, written with `SET … NX PX` when newly granted; the epoch is a
/// counter that only grows.
/// KEYS: the live lease, the epoch hash. ARGV: holder, ttl in ms.
/// Returns `{epoch, expires_ms}`, or nil when another holds it.
pub(super) static ACQUIRE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local live = redis.call('GET', KEYS[1])
local epoch
local fresh = false
if live then
  local l = cjson.decode(live)
  if l.holder ~= ARGV[1] then return false end
  epoch = l.epoch
else
  epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
  redis.call('HSET', KEYS[2], 'holder', ARGV[1])
  fresh = true
end
local expires = now + ttl
if ttl > 0 then
  local value = cjson.encode({holder = ARGV[1], epoch = epoch, expires_ms = expires})
  if fresh then
    redis.call('SET', KEYS[1], value, 'NX', 'PX', ttl)
  else
    redis.call('SET', KEYS[1], value, 'PX', ttl)
  end
else
  redis.call('DEL', KEYS[1])
end
return {epoch, expires}
"#,
    )
});

/// Extends a lease its holder still has: live, or expired and taken by
/// nobody since (the epoch hash still names it).
/// KEYS: the live lease, the epoch hash. ARGV: holder, epoch, ttl in ms.
/// Returns `{epoch, expires_ms}`, or nil when the lease was lost.
pub(super) static RENEW_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local live = redis.call('GET', KEYS[1])
if live then
  local l = cjson.decode(live)
  if l.holder ~= ARGV[1] or tonumber(l.epoch) ~= epoch then return false end
else
  local e = redis.call('HMGET', KEYS[2], 'epoch', 'holder')
  if tonumber(e[1]) ~= epoch or e[2] ~= ARGV[1] then return false end
end
local expires = now + ttl
if ttl > 0 then
  redis.call('SET', KEYS[1], cjson.encode({holder = ARGV[1], epoch = epoch, expires_ms = expires}), 'PX', ttl)
else
  redis.call('DEL', KEYS[1])
end
return {epoch, expires}
"#,
    )
});

/// Gives a lease up when it is still held with that holder and epoch: the
/// live key goes and the epoch hash keeps no holder, so nobody renews it.
/// KEYS: the live lease, the epoch hash. ARGV: holder, epoch.
pub(super) static RELEASE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local e = redis.call('HMGET', KEYS[2], 'epoch', 'holder')
if tonumber(e[1]) == tonumber(ARGV[2]) and e[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'holder', '')
  return 1
end
return 0
"#,
    )
});

/// Records a conflict under a new id.
/// KEYS: the id counter, all conflicts, the pipeline's conflicts.
/// ARGV: the conflict key base, then field/value pairs. Returns the id.
pub(super) static RECORD_CONFLICT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local id = redis.call('INCR', KEYS[1])
local key = ARGV[1] .. id
for i = 2, #ARGV, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', KEYS[2], id, id)
redis.call('ZADD', KEYS[3], id, id)
return id
"#,
    )
});

/// Marks a conflict resolved when it is there and unresolved.
/// KEYS: the conflict. ARGV: resolved_at, resolution. Returns 1 or 0.
pub(super) static RESOLVE_CONFLICT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'resolved_at') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'resolved_at', ARGV[1], 'resolution', ARGV[2])
return 1
"#,
    )
});
