"""The last-known-good copy: what it holds, how it is merged, and its bounds."""

from __future__ import annotations

import json
import zlib

import pytest

from policy.config import load_config
from policy.last_known_good import (
    FORMAT,
    MAX_COMPRESSED_BYTES,
    MAX_JSON_BYTES,
    Copy,
    CopyTooLarge,
    RegistryCopy,
    decode,
    encode,
    merged,
    own_listings,
    persisted_registries,
)
from policy.snapshot import Snapshot

CONFIG = load_config(
    """
registries:
  - {name: harbor, type: harbor, url: "https://harbor.example.com"}
  - {name: other, type: harbor, url: "https://other.example.com"}
  - name: static
    type: harbor
    url: https://static.example.com
    spaces: [{name: library, public: true}]
  - {name: platform, type: docker-registry, url: "https://registry.example.com"}
""",
    "test.yaml",
)
HARBOR = RegistryCopy("harbor", "https://harbor.example.com", {"library": True, "team-a": False})
OTHER = RegistryCopy("harbor", "https://other.example.com", {"tools": True})


def test_the_copy_is_for_the_harbors_listed_live_only() -> None:
    names = [r.name for r in persisted_registries(CONFIG)]
    assert names == ["harbor", "other"]  # not static spaces, not a Docker Registry's catalog


def test_a_copy_reads_back_as_written() -> None:
    copy = Copy({"harbor": HARBOR, "other": OTHER}, written_at=1_800_000_000.5)
    assert decode(encode(copy)) == copy


def test_the_same_copy_is_the_same_bytes() -> None:
    one = Copy({"harbor": HARBOR, "other": OTHER}, 1.0)
    two = Copy({"other": OTHER, "harbor": HARBOR}, 1.0)
    assert encode(one) == encode(two)


def test_ten_thousand_spaces_fit_well_within_the_bound() -> None:
    spaces = {f"team-{i:05d}-{'private' if i % 3 else 'public'}": i % 3 == 0 for i in range(10_000)}
    data = encode(Copy({"harbor": RegistryCopy("harbor", "https://h", spaces)}, 1.0))
    assert len(data) < MAX_COMPRESSED_BYTES / 4
    assert decode(data) is not None


def test_a_copy_over_its_bound_is_refused_when_written() -> None:
    spaces = {f"s{i}": True for i in range(2_000)}
    with pytest.raises(CopyTooLarge, match="2000 spaces"):
        encode(Copy({"harbor": RegistryCopy("harbor", "https://h", spaces)}, 1.0), max_bytes=1024)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not zlib",
        zlib.compress(b"not json"),
        zlib.compress(b"[]"),
        zlib.compress(
            json.dumps({"format": FORMAT + 1, "writtenAt": 1, "registries": {}}).encode()
        ),
        zlib.compress(json.dumps({"format": FORMAT, "writtenAt": "x", "registries": {}}).encode()),
        zlib.compress(json.dumps({"format": FORMAT, "writtenAt": 1, "registries": []}).encode()),
        zlib.compress(json.dumps({"format": FORMAT, "writtenAt": 1, "registries": {}}).encode())[
            :-3
        ],
    ],
    ids=["empty", "not-zlib", "not-json", "not-object", "format", "time", "registries", "cut"],
)
def test_anything_malformed_is_no_copy(data: bytes) -> None:
    assert decode(data) is None


def test_a_copy_that_inflates_past_its_bound_is_no_copy() -> None:
    bomb = zlib.compress(b" " * (MAX_JSON_BYTES + 1), 9)
    assert len(bomb) < 64 * 1024  # small on the wire
    assert decode(bomb) is None


def test_malformed_entries_are_left_out_and_the_rest_kept() -> None:
    document = {
        "format": FORMAT,
        "writtenAt": 5,
        "registries": {
            "harbor": {"type": "harbor", "url": "https://h", "spaces": {"a": True, "b": "yes"}},
            "broken": {"type": "harbor", "spaces": {}},
            "odd": "nothing",
        },
    }
    copy = decode(zlib.compress(json.dumps(document).encode()))
    assert copy == Copy({"harbor": RegistryCopy("harbor", "https://h", {"a": True})}, 5.0)


def test_own_listings_leave_out_what_the_replica_took_from_a_copy() -> None:
    snapshot = Snapshot.build(
        CONFIG,
        spaces={"harbor": HARBOR.spaces, "other": OTHER.spaces, "platform": {"x": True}},
        copied=frozenset({"other"}),
    )
    assert own_listings(snapshot) == {"harbor": HARBOR}


def test_a_registry_never_listed_is_not_in_the_own_listings() -> None:
    assert own_listings(Snapshot.build(CONFIG)) == {}


def test_merging_prefers_the_own_listing_and_keeps_the_copy_of_a_registry_not_listed() -> None:
    newer = RegistryCopy("harbor", HARBOR.url, {"library": True})
    current = Copy({"harbor": HARBOR, "other": OTHER}, 1.0)
    assert merged(CONFIG, {"harbor": newer}, current) == {"harbor": newer, "other": OTHER}


def test_merging_drops_what_the_config_no_longer_lists_the_same_way() -> None:
    moved = load_config(
        """
registries:
  - {name: harbor, type: harbor, url: "https://harbor.example.com"}
  - {name: other, type: harbor, url: "https://moved.example.com"}
""",
        "test.yaml",
    )
    current = Copy({"harbor": HARBOR, "other": OTHER, "gone": OTHER}, 1.0)
    assert merged(moved, {}, current) == {"harbor": HARBOR}


def test_a_copy_fits_only_the_same_server() -> None:
    (harbor, other, _static) = CONFIG.registries[:3]
    assert HARBOR.fits(harbor)
    assert not HARBOR.fits(other)
    assert not RegistryCopy("docker-registry", HARBOR.url).fits(harbor)
