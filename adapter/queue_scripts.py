"""The Lua programs Baton runs inside Redis, each one atomic and one round trip, and the
argument format of the webhook hot path's `MARK`.

Keys are built inside the scripts from a prefix rather than passed as KEYS: one round trip
for any number of records, no cluster (Baton runs on one Redis).
"""
from __future__ import annotations

import json
from typing import Sequence

import orjson

# ARGV: prefix, de-duplication bucket width (s), now (epoch s), drain flag ttl, a JSON array
# of the event keys to de-duplicate (distinct), then pairs of "crm:type" and a JSON array of
# record ids. The first ids, across pairs, are those of the event keys, one for one and in
# order; ids after them are never de-duplicated. Arrays decoded by cjson, in C, cost a
# fraction of splitting a packed string in Lua, and a fraction on the client of passing
# every key and id as an argument of its own.
#
# De-duplication: event keys go into one SET per time bucket ({p}:seen:{bucket}, width W =
# half the de-duplication TTL); a key counts as seen while it is in the current bucket or the
# two before, so it is remembered for at least the TTL (2 W) and at most 3 W, when its bucket
# expires. Each accepted key is in exactly one bucket. The older buckets are asked key by key
# (SMISMEMBER); the current one is not asked at all: SADD says how many keys it did not hold,
# which is exact when none or all of them are duplicates, the cases webhooks produce (a first
# delivery, a redelivery). A batch mixing new keys with keys the current bucket already held
# has its accepted count right, but every record of the batch not found in an older bucket is
# marked pending again: a spare reconcile, never a lost event. A handful of set commands per
# batch keeps Redis' own CPU per webhook batch small. Returns {accepted count, "crm:type" of
# each drain flag newly set}.
MARK = r"""
local p, width, now, flag_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
-- unpack() is bounded by Lua's C stack: hand Redis at most 1000 members per call.
local function chunked(cmd, key, list, out)
  local total = 0
  for i = 1, #list, 1000 do
    local part = redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
    if out then for _, v in ipairs(part) do out[#out + 1] = v end else total = total + part end
  end
  return total
end
local keys = cjson.decode(ARGV[5])
local old, n_old = {}, 0  -- old[i]: keys[i] is in an older bucket
local accepted_keys = 0
if #keys > 0 then
  local bucket = math.floor(now / width)
  for back = 1, 2 do
    local key = p .. ':seen:' .. (bucket - back)
    if redis.call('EXISTS', key) == 1 then
      local hits = {}
      chunked('SMISMEMBER', key, keys, hits)
      for i, hit in ipairs(hits) do
        if hit == 1 and not old[i] then old[i], n_old = true, n_old + 1 end
      end
    end
  end
  local current = p .. ':seen:' .. bucket
  local added = chunked('SADD', current, keys)
  if n_old > 0 then  -- keep each accepted key in one bucket only
    local again = {}
    for i, k in ipairs(keys) do if old[i] then again[#again + 1] = k end end
    chunked('SREM', current, again)
  end
  redis.call('EXPIREAT', current, (bucket + 3) * width)
  accepted_keys = added - n_old
end
local accepted, kicked, item = accepted_keys, {}, 0
for g = 6, #ARGV, 2 do
  local pair, ids = ARGV[g], cjson.decode(ARGV[g + 1])
  local fresh = ids
  if item < #keys then  -- ids of de-duplicated keys
    if accepted_keys == 0 then
      fresh = {}
    elseif n_old > 0 then
      fresh = {}
      for j, id in ipairs(ids) do if not old[item + j] then fresh[#fresh + 1] = id end end
    end
  else
    accepted = accepted + #ids  -- never de-duplicated
  end
  if #fresh > 0 then
    chunked('SADD', p .. ':pending:' .. pair, fresh)
    redis.call('SADD', p .. ':pending-types', pair)
    if redis.call('SET', p .. ':drain:' .. pair, ARGV[3], 'NX', 'EX', flag_ttl) then
      kicked[#kicked + 1] = pair
    end
  end
  item = item + #ids
end
return {accepted, kicked}
"""

# KEYS: pending, claimed. ARGV: count, lease expiry, lock key prefix ("{p}:lock:{crm}:{type}:").
# Pops ids into the claimed set, except ids whose record is locked by a running job: those
# stay pending (the job's unlock kicks a drain for them), so they are never handed to a second
# job while the first reconciles them. Returns {claimed ids, how many were left locked}.
CLAIM = """
local ids = redis.call('SPOP', KEYS[1], ARGV[1])
local free, held = {}, {}
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[3] .. id) == 1 then
    held[#held + 1] = id
  else
    free[#free + 1] = id
    redis.call('ZADD', KEYS[2], ARGV[2], id)
  end
end
if #held > 0 then redis.call('SADD', KEYS[1], unpack(held)) end
return {free, #held}
"""

# KEYS: claimed, pending. ARGV: now. Puts ids whose lease ended back to pending.
REAP = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(ids) do redis.call('SADD', KEYS[2], id) end
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return #ids
"""

# KEYS: lock keys. ARGV: token, ttl ms. Returns 1/0 per key (re-entrant for the same token).
LOCK = """
local out = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if not holder or holder == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# KEYS: lock keys. ARGV: token, prefix, flag ttl, now, then "crm:type" and id of each key.
# Deletes the locks this token holds; a released record that is pending again (an event came
# while it was locked, and drains skipped it) gets its drain flag set. Returns {released,
# "crm:type" of each drain flag newly set}.
UNLOCK = """
local n, p, wanted, kicked = 0, ARGV[2], {}, {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    n = n + redis.call('DEL', key)
    local pair, id = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
    if not wanted[pair] and redis.call('SISMEMBER', p .. ':pending:' .. pair, id) == 1 then
      wanted[pair] = true
      if redis.call('SET', p .. ':drain:' .. pair, ARGV[4], 'NX', 'EX', ARGV[3]) then
        kicked[#kicked + 1] = pair
      end
    end
  end
end
return {n, kicked}
"""

# KEYS: deadlines. ARGV: now, limit. Pops due refs.
DUE = """
local refs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #refs > 0 then redis.call('ZREM', KEYS[1], unpack(refs)) end
return refs
"""


#: All the bytes orjson writes for arrays of arrays of integers.
_INTEGER_ARRAY_BYTES = b"0123456789-,[]"


class PackedHints:
    """A batch's hints already in `MARK`'s argument format, made by `pack_numeric_hints`: for
    each "crm:type", a JSON array of event keys and one of their record ids, in the same order,
    no key twice in the batch. Iterating gives the (event key, "crm:type", id) hints it stands
    for; `len` is their number."""

    __slots__ = ("groups", "count")

    def __init__(self, groups: Sequence[tuple[str, bytes, bytes]], count: int):
        self.groups, self.count = groups, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        for pair, keys, ids in self.groups:
            for key, record_id in zip(orjson.loads(keys), orjson.loads(ids)):
                yield key, pair, record_id

    def __repr__(self) -> str:
        return f"PackedHints({list(self)!r})"

    def mark_args(self) -> list:
        if len(self.groups) == 1:
            keys = self.groups[0][1]
        else:  # the key arrays joined, group after group, as the script reads them
            keys = b"[" + b",".join(group_keys[1:-1] for _, group_keys, _ in self.groups) + b"]"
        args = [keys]
        for pair, _, ids in self.groups:
            args += (pair, ids)
        return args


def pack_numeric_hints(key_prefix: str, rows_by_pair: dict[str, list[tuple]], id_column: int) -> PackedHints | None:
    """`PackedHints` for events whose every key part is an integer: each row's event key is
    `key_prefix` followed by the row's integers joined by ":", its record id the integer at
    `id_column`. Rows are distinct and non-empty. None if a value is anything but an `int`.

    The webhook hot path's bottleneck is turning integers into strings, hundreds per batch, in
    Python; orjson does it in C, and a few byte replacements turn its arrays of numbers into
    JSON arrays of those strings.
    """
    prefix = key_prefix.encode()
    if orjson.dumps(key_prefix) != b'"' + prefix + b'"':
        raise ValueError(f"key prefix {key_prefix!r} needs escaping in JSON")
    groups, count = [], 0
    for pair, rows in rows_by_pair.items():
        try:
            numbers = orjson.dumps(rows)[2:-2]  # [[1,2],[3,4]] -> 1,2],[3,4
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            return None
        if numbers.translate(None, _INTEGER_ARRAY_BYTES):  # a string, float, bool or null
            return None
        keys = numbers.replace(b",", b":").replace(b"]:[", b'","' + prefix)
        ids = orjson.dumps([row[id_column] for row in rows])[1:-1].replace(b",", b'","')
        groups.append((pair, b'["' + prefix + keys + b'"]', b'["' + ids + b'"]'))
        count += len(rows)
    return PackedHints(groups, count)


def mark_args(hints: Sequence[tuple[str, str, str]] | PackedHints) -> list:
    """`MARK`'s arguments after the header, for (event key, "crm:type", id) hints. A hint that
    repeats an event key already in `hints` is left out: the first one counts, and the script's
    accepted count makes the others duplicates."""
    if isinstance(hints, PackedHints):
        return hints.mark_args()
    keyed: dict[str, tuple[list[str], list[str]]] = {}  # crm:type -> (event keys, their ids)
    plain: dict[str, list[str]] = {}  # crm:type -> ids never de-duplicated
    firsts: set[str] = set()
    for seen, pair, record_id in hints:
        if not seen:
            plain.setdefault(pair, []).append(record_id)
        elif seen not in firsts:
            firsts.add(seen)
            group = keyed.get(pair)
            if group is None:
                group = keyed[pair] = ([], [])
            group[0].append(seen)
            group[1].append(record_id)
    keys, groups = [], []
    for pair, (pair_keys, ids) in keyed.items():
        keys += pair_keys
        groups += (pair, _json(ids))
    for pair, ids in plain.items():
        groups += (pair, _json(ids))
    return [_json(keys), *groups]


def _json(strings: list[str]) -> bytes:
    try:
        return orjson.dumps(strings)
    except orjson.JSONEncodeError:
        # A lone surrogate (from a body only the json module would read): cjson refuses its
        # escape, so pass it as the bytes Python would write for it.
        return json.dumps(strings, ensure_ascii=False).encode("utf-8", "surrogatepass")
