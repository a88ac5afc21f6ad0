"""Reader counts, release, head, leases and sweep from Python. The shm layout does not carry
counts and leases yet (it refuses them with InvalidArgumentError): those cases skip there."""

import time

import pytest

import gos


def counted(store, key, value, **options):
    try:
        store.put(key, value, **options)
    except gos.InvalidArgumentError as e:
        if store.kind == "shm":
            pytest.skip(f"this shm layout refuses counts and leases: {e}")
        raise


def test_release_counts_down_and_deletes_at_zero(store):
    counted(store, "fed/a/round_1", b"weights", readers=2)
    head = store.head("fed/a/round_1")
    assert head.pop("digest") is not None
    assert head == {"size": 7, "readers": 2, "expires_at": None}
    first = store.release("fed/a/round_1")
    assert first.kind == "remaining" and first.remaining == 1 and not first.deleted
    assert store.head("fed/a/round_1")["readers"] == 1
    view = store.get("fed/a/round_1")
    last = store.release("fed/a/round_1")
    assert last.kind == "deleted" and last.deleted
    assert store.get("fed/a/round_1") is None and store.head("fed/a/round_1") is None
    assert bytes(view) == b"weights", "a value handed out stays valid"
    assert store.release("fed/a/round_1").kind == "not_found"


def test_release_of_an_unbounded_object_changes_nothing(store):
    store.put("k", b"x")
    head = store.head("k")
    digest = head.pop("digest")
    assert head == {"size": 1, "readers": None, "expires_at": None}
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert store.release("k") == store.release("k")
    assert store.release("k").kind == "unbounded"
    assert bytes(store.get("k")) == b"x"


def test_a_lease_expires_and_sweep_removes_it(store):
    now = time.time()
    counted(store, "leased", b"abc", lease=0.2)
    store.put("kept", b"def")
    expires = store.head("leased")["expires_at"]
    assert now + 0.1 < expires < now + 5
    deadline = time.monotonic() + 5
    while store.head("leased") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get("leased") is None
    store.sweep()  # nothing left to sweep or one; never the unexpired key
    assert store.keys() == ["kept"]


def test_sweep_counts_what_it_removes():
    store = gos.MemoryStore()
    for i in range(3):
        store.put(f"k{i}", b"x", lease=0.05)
    store.put("stay", b"y", lease=60)
    time.sleep(0.2)
    assert store.sweep() == 3
    assert store.keys() == ["stay"]


def test_reservations_take_the_options(store):
    try:
        r = store.reserve("r", 3, readers=1)
    except gos.InvalidArgumentError as e:
        pytest.skip(f"this shm layout refuses counts: {e}")
    memoryview(r)[:] = b"abc"
    r.commit()
    assert store.head("r")["readers"] == 1
    assert store.release("r").deleted


def test_the_digest_is_kept_with_the_value_and_verified_on_request(store):
    store.put("a", b"weights of round 1")
    store.put("b", b"weights of round 2")
    da, db = store.head("a")["digest"], store.head("b")["digest"]
    assert da != db, "different bytes, different digests"
    store.put("a", b"weights of round 2")
    assert store.head("a")["digest"] == db, "the digest follows the bytes, not the key"
    assert bytes(store.get("a", verify=True)) == b"weights of round 2"
    assert store.get("missing", verify=True) is None
