//! The Lua scripts of the store: one per operation, each touching the keys of one bucket (one
//! hash slot) or of the ledger, so that each runs atomically on one master. See docs/redis.md.
//!
//! Bucket scripts take `KEYS[1]` = the bucket's accounting hash (for routing), `ARGV[1]` = the
//! bucket's tag (`{gos:<ns>:<b>}`), `ARGV[2]` = the caller's clock, in Unix ms; their own
//! arguments follow. They answer `{tag, a, b, c}` (a status and three integers), except the
//! listings, which answer the names.

use std::sync::LazyLock;

use redis::Script;

/// Shared helpers of the bucket scripts.
const PRELUDE: &str = r#"
local P = ARGV[1]
local now = tonumber(ARGV[2])
local A, I, X, R, RL = P..'a', P..'i', P..'x', P..'r', P..'rl'
local function num(f) return tonumber(redis.call('HGET', A, f) or '0') end
-- `0 + d`: never `-0`, which HINCRBY refuses.
local function add(f, d) if d ~= 0 then redis.call('HINCRBY', A, f, 0 + d) end end
local function purge_res()
  local ids = redis.call('ZRANGEBYSCORE', R, '-inf', now)
  for _, id in ipairs(ids) do
    add('r', -tonumber(redis.call('HGET', RL, id) or '0'))
    redis.call('HDEL', RL, id)
    redis.call('ZREM', R, id)
    redis.call('UNLINK', P..'s:'..id)
  end
end
local function hdr(name)
  local o = P..'o:'..name
  local h = redis.call('GETRANGE', o, 0, 63)
  if #h < 64 then return nil end
  return tonumber(string.sub(h, 3, 12)), tonumber(string.sub(h, 13, 32)), redis.call('STRLEN', o) - 64, string.sub(h, 33, 64)
end
local function remove(name, size)
  redis.call('UNLINK', P..'o:'..name)
  redis.call('ZREM', I, name)
  redis.call('ZREM', X, name)
  add('u', -size)
  add('n', -1)
end
local function live(name)
  local r, e, s, d = hdr(name)
  if r == nil then return nil end
  if e > 0 and e <= now then remove(name, s) return nil end
  return r, e, s, d
end
local function purge_leases()
  local names = redis.call('ZRANGEBYSCORE', X, '-inf', now)
  local n = 0
  for _, name in ipairs(names) do
    local r, e, s = hdr(name)
    if r ~= nil and e > 0 and e <= now then
      remove(name, s)
      n = n + 1
    else
      redis.call('ZREM', X, name)
    end
  end
  return n
end
local function missing(growth)
  if growth <= 0 then return 0 end
  local miss = num('u') + num('r') + growth - num('qb')
  if miss < 0 then return 0 end
  return miss
end
local function entry_full() return num('n') + 1 > num('qe') end
local function place(name, e)
  redis.call('ZADD', I, 0, name)
  if e > 0 then redis.call('ZADD', X, e, name) else redis.call('ZREM', X, name) end
end
local function matches(name, p)
  return p == '' or name == p or string.sub(name, 1, #p + 1) == p..'/'
end
"#;

/// Puts a small value: ARGV 3 name, 4 create (`1`/`0`), 5 header and value, 6 deadline.
const PUT_INLINE: &str = r#"
purge_res()
purge_leases()
local name = ARGV[3]
local r, e, s = live(name)
if r ~= nil and ARGV[4] == '1' then return {'EXISTS', 0, 0, 0} end
local growth = #ARGV[5] - 64 - (s or 0)
local miss = missing(growth)
if miss > 0 then return {'NEEDB', miss, 0, 0} end
if r == nil and entry_full() then return {'NEEDE', 1, 0, 0} end
redis.call('SET', P..'o:'..name, ARGV[5])
place(name, tonumber(ARGV[6]))
add('u', growth)
if r == nil then add('n', 1) end
return {'OK', 0, 0, 0}
"#;

/// Charges a reservation: ARGV 3 id, 4 length, 5 deadline, 6 name whose live value the charge
/// may count as freed (`''` for none: a `reserve` charges the full length), 7 create.
const CHARGE: &str = r#"
purge_res()
purge_leases()
local id, len = ARGV[3], tonumber(ARGV[4])
local credit = 0
if ARGV[6] ~= '' then
  local r, e, s = live(ARGV[6])
  if r ~= nil then
    if ARGV[7] == '1' then return {'EXISTS', 0, 0, 0} end
    credit = s
  end
end
local miss = missing(len - credit)
if miss > 0 then return {'NEEDB', miss, 0, 0} end
add('r', len)
redis.call('ZADD', R, tonumber(ARGV[5]), id)
redis.call('HSET', RL, id, len)
return {'OK', 0, 0, 0}
"#;

/// Installs a staged value: ARGV 3 id, 4 name, 5 create, 6 length, 7 deadline of the object.
const INSTALL: &str = r#"
purge_res()
purge_leases()
local id, name, len = ARGV[3], ARGV[4], tonumber(ARGV[6])
local S = P..'s:'..id
local function drop()
  add('r', -len)
  redis.call('ZREM', R, id)
  redis.call('HDEL', RL, id)
  redis.call('UNLINK', S)
end
if not redis.call('ZSCORE', R, id) then
  redis.call('UNLINK', S)
  return {'GONE', 0, 0, 0}
end
if redis.call('STRLEN', S) ~= len + 64 then
  drop()
  return {'SHORT', 0, 0, 0}
end
local r, e, s = live(name)
if r ~= nil and ARGV[5] == '1' then
  drop()
  return {'EXISTS', 0, 0, 0}
end
if r == nil and entry_full() then return {'NEEDE', 1, 0, 0} end
local O = P..'o:'..name
if r ~= nil then redis.call('UNLINK', O) end
redis.call('RENAME', S, O)
redis.call('PERSIST', O)
place(name, tonumber(ARGV[7]))
add('r', -len)
add('u', len - (s or 0))
if r == nil then add('n', 1) end
redis.call('ZREM', R, id)
redis.call('HDEL', RL, id)
return {'OK', 0, 0, 0}
"#;

/// Drops a reservation and its staging key (idempotent): ARGV 3 id.
const UNRESERVE: &str = r#"
local id = ARGV[3]
local len = redis.call('HGET', RL, id)
if len then
  add('r', -tonumber(len))
  redis.call('ZREM', R, id)
  redis.call('HDEL', RL, id)
end
redis.call('UNLINK', P..'s:'..id)
return {'OK', 0, 0, 0}
"#;

/// Readers left, deadline and size of a live object (removing it if expired): ARGV 3 name.
const HEAD: &str = r#"
local r, e, s, d = live(ARGV[3])
if r == nil then return {'NF', 0, 0, 0} end
return {'OK' .. d, r, e, s}
"#;

/// One release: ARGV 3 name.
const RELEASE: &str = r#"
local name = ARGV[3]
local r, e, s = live(name)
if r == nil then return {'NF', 0, 0, 0} end
if r == 0 then return {'UNB', 0, 0, 0} end
if r == 1 then
  remove(name, s)
  return {'DEL', 0, 0, 0}
end
redis.call('SETRANGE', P..'o:'..name, 2, string.format('%010d', r - 1))
return {'REM', r - 1, 0, 0}
"#;

/// Removes the live objects among ARGV 3.. (names); answers how many.
const DELETE: &str = r#"
local n = 0
for i = 3, #ARGV do
  local r, e, s = live(ARGV[i])
  if r ~= nil then
    remove(ARGV[i], s)
    n = n + 1
  end
end
return {'OK', n, 0, 0}
"#;

/// The live names with prefix ARGV 3 (segment-wise; `''` for all), ascending.
const LIST: &str = r#"
purge_leases()
local p = ARGV[3]
local names
if p == '' then
  names = redis.call('ZRANGEBYLEX', I, '-', '+')
else
  names = redis.call('ZRANGEBYLEX', I, '['..p, '('..p..'\255')
end
local out = {}
for _, name in ipairs(names) do
  if matches(name, p) then out[#out + 1] = name end
end
return out
"#;

/// Removes the live objects with prefix ARGV 3 (segment-wise); answers how many.
const DELETE_PREFIX: &str = r#"
purge_leases()
local p = ARGV[3]
local names
if p == '' then
  names = redis.call('ZRANGEBYLEX', I, '-', '+')
else
  names = redis.call('ZRANGEBYLEX', I, '['..p, '('..p..'\255')
end
local n = 0
for _, name in ipairs(names) do
  if matches(name, p) then
    local r, e, s = hdr(name)
    if r ~= nil then
      remove(name, s)
      n = n + 1
    else
      redis.call('ZREM', I, name)
    end
  end
end
return {'OK', n, 0, 0}
"#;

/// Drops what expired; answers the bucket's used bytes, reserved bytes and entries.
const STATS: &str = r#"
purge_res()
purge_leases()
return {'OK', num('u'), num('r'), num('n')}
"#;

/// Drops what expired; answers how many objects it removed.
const SWEEP: &str = r#"
purge_res()
return {'OK', purge_leases(), 0, 0}
"#;

/// Gives back the bucket's spare quota; answers the bytes and entries given back.
const SHED: &str = r#"
purge_res()
purge_leases()
local sb = num('qb') - num('u') - num('r')
if sb < 0 then sb = 0 end
local se = num('qe') - num('n')
if se < 0 then se = 0 end
add('qb', -sb)
add('qe', -se)
return {'OK', sb, se, 0}
"#;

/// Adds quota to the bucket: ARGV 3 bytes, 4 entries.
const CREDIT: &str = r#"
add('qb', tonumber(ARGV[3]))
add('qe', tonumber(ARGV[4]))
return {'OK', 0, 0, 0}
"#;

/// The bucket's quota of bytes and entries.
const QUOTA: &str = r#"
return {'OK', num('qb'), num('qe'), 0}
"#;

/// Creates the ledger if missing (ARGV 1 capacity, 2 max entries, 3 buckets); answers what it
/// holds.
const LEDGER_INIT: &str = r#"
local L = KEYS[1]
if redis.call('EXISTS', L) == 0 then
  redis.call('HSET', L, 'cap', ARGV[1], 'maxe', ARGV[2], 'buckets', ARGV[3], 'gb', 0, 'ge', 0)
end
local v = redis.call('HMGET', L, 'cap', 'maxe', 'buckets')
return {'OK', tonumber(v[1]), tonumber(v[2]), tonumber(v[3])}
"#;

/// Grants ARGV 1 bytes and 2 entries if both fit; otherwise answers what is left.
const LEDGER_GRANT: &str = r#"
local L = KEYS[1]
local v = redis.call('HMGET', L, 'cap', 'maxe', 'gb', 'ge')
local cap, maxe = tonumber(v[1]), tonumber(v[2])
local gb, ge = tonumber(v[3] or '0'), tonumber(v[4] or '0')
local db, de = tonumber(ARGV[1]), tonumber(ARGV[2])
if gb + db <= cap and ge + de <= maxe then
  redis.call('HINCRBY', L, 'gb', db)
  redis.call('HINCRBY', L, 'ge', de)
  return {'OK', 0, 0, 0}
end
return {'FULL', cap - gb, maxe - ge, 0}
"#;

/// Takes back ARGV 1 bytes and 2 entries of quota.
const LEDGER_GIVE_BACK: &str = r#"
local L = KEYS[1]
redis.call('HINCRBY', L, 'gb', 0 - tonumber(ARGV[1]))
redis.call('HINCRBY', L, 'ge', 0 - tonumber(ARGV[2]))
return {'OK', 0, 0, 0}
"#;

/// Sets the granted totals (ARGV 1 bytes, 2 entries): `reconcile`.
const LEDGER_SET: &str = r#"
local L = KEYS[1]
redis.call('HSET', L, 'gb', ARGV[1], 'ge', ARGV[2])
return {'OK', 0, 0, 0}
"#;

/// Removes the bucket's keys (for `RedisStore::destroy`): up to 1000 objects a call
/// (`MORE`), then the staging keys of its reservations and its bookkeeping (`OK`).
const DESTROY: &str = r#"
local names = redis.call('ZRANGE', I, 0, 999)
for _, name in ipairs(names) do
  redis.call('UNLINK', P..'o:'..name)
  redis.call('ZREM', I, name)
end
if #names == 1000 then return {'MORE', #names, 0, 0} end
for _, id in ipairs(redis.call('HKEYS', RL)) do
  redis.call('UNLINK', P..'s:'..id)
end
redis.call('UNLINK', A, I, X, R, RL)
return {'OK', #names, 0, 0}
"#;

fn bucket(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// Every script, compiled once (their SHA1 is what `EVALSHA` sends).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) put_inline: Script,
    pub(crate) charge: Script,
    pub(crate) install: Script,
    pub(crate) unreserve: Script,
    pub(crate) head: Script,
    pub(crate) release: Script,
    pub(crate) delete: Script,
    pub(crate) list: Script,
    pub(crate) delete_prefix: Script,
    pub(crate) stats: Script,
    pub(crate) sweep: Script,
    pub(crate) shed: Script,
    pub(crate) credit: Script,
    pub(crate) quota: Script,
    pub(crate) destroy: Script,
    pub(crate) ledger_init: Script,
    pub(crate) ledger_grant: Script,
    pub(crate) ledger_give_back: Script,
    pub(crate) ledger_set: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    put_inline: bucket(PUT_INLINE),
    charge: bucket(CHARGE),
    install: bucket(INSTALL),
    unreserve: bucket(UNRESERVE),
    head: bucket(HEAD),
    release: bucket(RELEASE),
    delete: bucket(DELETE),
    list: bucket(LIST),
    delete_prefix: bucket(DELETE_PREFIX),
    stats: bucket(STATS),
    sweep: bucket(SWEEP),
    shed: bucket(SHED),
    credit: bucket(CREDIT),
    quota: bucket(QUOTA),
    destroy: bucket(DESTROY),
    ledger_init: Script::new(LEDGER_INIT),
    ledger_grant: Script::new(LEDGER_GRANT),
    ledger_give_back: Script::new(LEDGER_GIVE_BACK),
    ledger_set: Script::new(LEDGER_SET),
});
