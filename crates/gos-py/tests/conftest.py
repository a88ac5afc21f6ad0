"""Shared fixtures: a fresh store of each backend, shm stores removed after each test."""

import os
import uuid

import pytest

import gos


@pytest.fixture
def shm_name():
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    gos.ShmStore.remove(name)


@pytest.fixture
def shm_store(shm_name):
    return gos.ShmStore.create(shm_name, 16 << 20, max_entries=256)


@pytest.fixture(params=["memory", "shm"])
def store(request, shm_name):
    """A 16 MiB store of each backend."""
    if request.param == "memory":
        return gos.MemoryStore(16 << 20, max_entries=256)
    return gos.ShmStore.create(shm_name, 16 << 20, max_entries=256)


@pytest.fixture(params=["memory", "shm"])
def big_store(request, shm_name):
    """A store for 100 MiB values (shm: room for an overwrite while the old value is pinned)."""
    if request.param == "memory":
        return gos.MemoryStore(224 << 20, max_entries=16)
    return gos.ShmStore.create(shm_name, 224 << 20, max_entries=16)


def mapping_of(path):
    """The address ranges where this process maps `path` (from /proc/self/maps). A store
    created with O_TMPFILE is listed under its anonymous name in the same directory
    (`<dir>/#<inode> (deleted)`), so that name counts too."""
    import os

    anonymous = os.path.join(os.path.dirname(str(path)), "#")
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            if str(path) in line or anonymous in line:
                lo, hi = line.split()[0].split("-")
                ranges.append((int(lo, 16), int(hi, 16)))
    return ranges
