"""The Lua programs Baton runs inside Redis, each one atomic and one round trip, and the
argument format of the webhook hot path's `MARK`.

Keys are built inside the scripts from a prefix rather than passed as KEYS: one round trip
for any number of records, no cluster (Baton runs on one Redis).
"""
from __future__ import annotations

import json
from typing import Sequence

import orjson

#: One de-duplication set per day of occurrence: every delivery of an event names the same
#: `occurredAt`, so it meets the same set, whichever day it arrives.
SEEN_BUCKET_MS = 24 * 3600 * 1000

# ARGV: prefix, de-duplication TTL (s), now (epoch s), drain flag ttl, a JSON array of the
# event keys to de-duplicate (distinct), then triples: "crm:type", the de-duplication bucket
# of its keys ("" for ids never de-duplicated) and a JSON array of record ids. The keys are
# those of the keyed triples' ids, one for one and in order. Arrays decoded by cjson, in C,
# cost a fraction of splitting a packed string in Lua, and a fraction on the client of
# passing every key and id as an argument of its own.
#
# De-duplication: a triple's keys go into the set of their bucket ({p}:seen:{bucket}, the
# day the events occurred, see `SEEN_BUCKET_MS`) with one SADD, which says how many it did
# not hold; each use pushes the set's expiry to the TTL from now, so a key is remembered for
# at least the TTL after its last delivery. No key is ever looked up on its own. The count of
# accepted events is exact; a triple whose keys were all held before marks nothing pending
# (a redelivery), one with any new key marks all its records (a batch mixing new events with
# redelivered ones costs a spare reconcile, never a lost event). Returns {accepted count,
# "crm:type" of each drain flag newly set}.
MARK = r"""
local p, ttl, flag_ttl = ARGV[1], ARGV[2], ARGV[4]
-- unpack() is bounded by Lua's C stack: hand Redis at most 1000 members per call.
local function chunked(cmd, key, list, first, last)
  local total = 0
  for i = first, last, 1000 do
    total = total + redis.call(cmd, key, unpack(list, i, math.min(i + 999, last)))
  end
  return total
end
local keys = cjson.decode(ARGV[5])
local accepted, kicked, item = 0, {}, 0
for g = 6, #ARGV, 3 do
  local pair, bucket, ids = ARGV[g], ARGV[g + 1], cjson.decode(ARGV[g + 2])
  local fresh = #ids
  if bucket ~= '' then
    local seen = p .. ':seen:' .. bucket
    fresh = chunked('SADD', seen, keys, item + 1, item + #ids)
    redis.call('EXPIRE', seen, ttl)
    item = item + #ids
  end
  accepted = accepted + fresh
  if fresh > 0 then
    chunked('SADD', p .. ':pending:' .. pair, ids, 1, #ids)
    redis.call('SADD', p .. ':pending-types', pair)
    if redis.call('SET', p .. ':drain:' .. pair, ARGV[3], 'NX', 'EX', flag_ttl) then
      kicked[#kicked + 1] = pair
    end
  end
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

#: (de-duplication key, "crm:type", record id, when the event occurred in epoch ms or None):
#: what `MARK` needs of an event. An empty key: never de-duplicated.
Hint = tuple[str, str, str, "int | None"]


def seen_bucket(occurred_ms: int | None, now: float) -> str:
    """The de-duplication set of an event: the day it occurred, else the day it arrived."""
    return str((occurred_ms if occurred_ms is not None else int(now * 1000)) // SEEN_BUCKET_MS)


class PackedHints:
    """A batch's hints already in `MARK`'s argument format, made by `pack_numeric_hints`: for
    each "crm:type" and day of occurrence, a JSON array of event keys and one of their record
    ids, in the same order, no key twice in the batch. Iterating gives the `Hint`s it stands
    for; `len` is their number."""

    __slots__ = ("groups", "count")

    def __init__(self, groups: Sequence[tuple[str, str, bytes, bytes, list[int]]], count: int):
        self.groups, self.count = groups, count  # (pair, bucket, keys, ids, occurred ms)

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        for pair, _, keys, ids, occurred in self.groups:
            for key, record_id, at in zip(orjson.loads(keys), orjson.loads(ids), occurred):
                yield key, pair, record_id, at

    def __repr__(self) -> str:
        return f"PackedHints({list(self)!r})"

    def mark_args(self) -> list:
        if len(self.groups) == 1:
            keys = self.groups[0][2]
        else:  # the key arrays joined, group after group, as the script reads them
            keys = b"[" + b",".join(group[2][1:-1] for group in self.groups) + b"]"
        args = [keys]
        for pair, bucket, _, ids, _ in self.groups:
            args += (pair, bucket, ids)
        return args


def pack_numeric_hints(key_prefix: str, rows_by_pair: dict[str, list[tuple]], id_column: int,
                       occurred_column: int) -> PackedHints | None:
    """`PackedHints` for events whose every key part is an integer: each row's event key is
    `key_prefix` followed by the row's integers joined by ":", its record id the integer at
    `id_column`, when it occurred (epoch ms) the one at `occurred_column`. Rows are distinct
    and non-empty. None if a value is anything but an `int`.

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
        occurred = [row[occurred_column] for row in rows]
        first, last = min(occurred) // SEEN_BUCKET_MS, max(occurred) // SEEN_BUCKET_MS
        if first == last:
            keys = numbers.replace(b",", b":").replace(b"]:[", b'","' + prefix)
            ids = orjson.dumps([row[id_column] for row in rows])[1:-1].replace(b",", b'","')
            groups.append((pair, str(first), b'["' + prefix + keys + b'"]', b'["' + ids + b'"]', occurred))
        else:  # the batch spans midnight: one group per day
            days: dict[int, list[tuple]] = {}
            for row in rows:
                days.setdefault(row[occurred_column] // SEEN_BUCKET_MS, []).append(row)
            for day_rows in days.values():
                groups += pack_numeric_hints(key_prefix, {pair: day_rows}, id_column, occurred_column).groups
        count += len(rows)
    return PackedHints(groups, count)


def mark_args(hints: Sequence[Hint] | PackedHints, now: float) -> list:
    """`MARK`'s arguments after the header, for `Hint`s (`now`, epoch s: the arrival of those
    that do not say when they occurred). A hint that repeats an event key already in `hints`
    is left out: the first one counts, and the script's accepted count makes the others
    duplicates."""
    if isinstance(hints, PackedHints):
        return hints.mark_args()
    keyed: dict[tuple[str, str], tuple[list[str], list[str]]] = {}  # (crm:type, bucket) -> (keys, ids)
    plain: dict[str, list[str]] = {}  # crm:type -> ids never de-duplicated
    firsts: set[str] = set()
    for key, pair, record_id, occurred_ms in hints:
        if not key:
            plain.setdefault(pair, []).append(record_id)
        elif key not in firsts:
            firsts.add(key)
            where = (pair, seen_bucket(occurred_ms, now))
            group = keyed.get(where)
            if group is None:
                group = keyed[where] = ([], [])
            group[0].append(key)
            group[1].append(record_id)
    keys, groups = [], []
    for (pair, bucket), (group_keys, ids) in keyed.items():
        keys += group_keys
        groups += (pair, bucket, _json(ids))
    for pair, ids in plain.items():
        groups += (pair, "", _json(ids))
    return [_json(keys), *groups]


def _json(strings: list[str]) -> bytes:
    try:
        return orjson.dumps(strings)
    except orjson.JSONEncodeError:
        # A lone surrogate (from a body only the json module would read): cjson refuses its
        # escape, so pass it as the bytes Python would write for it.
        return json.dumps(strings, ensure_ascii=False).encode("utf-8", "surrogatepass")
