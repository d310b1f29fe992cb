"""The record of the namespaces a robot's credential was given to.

It decides when a robot must be replaced because a namespace that held it left, so it must
never forget a namespace it was told about, must say so when it cannot tell, and must stay
small enough to live in a Secret next to the credential.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.leader.provisioning.holders import MAX_RECORD, Holders

NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


def test_a_namespace_no_longer_entitled_has_departed_and_one_joining_has_not() -> None:
    record = Holders.of({"a-dev", "a-prod"})

    assert record.departed(frozenset({"a-dev", "a-prod", "a-test"})) == frozenset()
    assert record.departed(frozenset({"a-dev"})) == frozenset({"a-prod"})
    assert record.departed(frozenset()) == frozenset({"a-dev", "a-prod"})


def test_extending_a_record_keeps_every_namespace_it_knew() -> None:
    record = Holders.of({"a-dev", "a-prod"})

    assert record.extended(frozenset({"a-dev"})) is record  # covered: nothing to write
    grown = record.extended(frozenset({"a-dev", "a-test"}))

    assert grown is not None and grown.names == frozenset({"a-dev", "a-prod", "a-test"})
    assert grown.departed(frozenset({"a-dev", "a-test"})) == frozenset(
        {"a-prod"}
    )  # a-prod not forgotten


@given(st.frozensets(NAMES, max_size=50))
def test_a_record_reads_back_as_it_was_written(names: frozenset[str]) -> None:
    record = Holders.of(names)
    assert Holders.decode(record.encode()) == record


def test_too_many_names_keep_only_a_digest_which_counts_any_change_as_a_departure() -> None:
    many = frozenset(f"ns-{i:06d}-{zlib.crc32(str(i).encode()):08x}" for i in range(60_000))
    record = Holders.of(many)

    assert record.names is None and len(record.encode()) <= MAX_RECORD
    assert Holders.decode(record.encode()) == record
    assert record.departed(many) == frozenset()
    assert record.departed(many - {"ns-000001-" + f"{zlib.crc32(b'1'):08x}"}) is None
    assert record.departed(many | {"newcomer"}) is None  # cannot tell: rotate
    assert record.extended(many) is record
    assert record.extended(many | {"newcomer"}) is None  # cannot record: do not hand out


def test_a_large_but_ordinary_workspace_is_still_recorded_by_name() -> None:
    names = frozenset(f"team-{i:05d}-dev" for i in range(10_000))
    record = Holders.of(names)
    assert record.names == names and len(record.encode()) <= MAX_RECORD


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"zlib:",
        b"zlib:" + zlib.compress(b"A-Upper"),
        b"zlib:" + zlib.compress(b"ok\n" + b"x" * 64),  # longer than a namespace name
        b"zlib:" + zlib.compress(b"a" * (9 * 1024 * 1024)),
        b"zlib:" + zlib.compress(b"a-dev")[:-2],  # cut short
        b"sha256:" + b"0" * 63,
        b"plain a-dev",
    ],
)
def test_anything_but_a_record_reads_as_none(raw: bytes) -> None:
    assert Holders.decode(raw) is None
