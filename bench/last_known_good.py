"""Benchmark: the size of the last-known-good copy the leader keeps in a Secret.

What it measures: ``policy.last_known_good.encode`` (JSON, zlib level 9) of one Harbor's
spaces, for 1,000 to 100,000 spaces, with two kinds of names:

- *patterned*: ``<team>-<service>-<env>`` from small word lists plus a number, as platform
  teams name Harbor projects (compresses well);
- *random*: 12 random lowercase letters and digits (the worst case for compression).

One space in ten is public. For each: the JSON's size, the compressed size (what the bound
:data:`~policy.last_known_good.MAX_COMPRESSED_BYTES` applies to), the Secret's ``data`` as
stored (base64, 4/3 of it; the apiserver's limit for a Secret is 1 MiB), the time to encode
and to decode, and the most spaces of that kind that fit the bound.

Target (issue "Chaos"): the copy for 10,000 spaces is bounded and measured. Figures, not a
test: it prints a table and exits 0 whatever the numbers are.

Run: ``.venv/bin/python bench/last_known_good.py``
"""

from __future__ import annotations

import random
import string
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from policy.last_known_good import (  # noqa: E402
    MAX_COMPRESSED_BYTES,
    Copy,
    CopyTooLarge,
    RegistryCopy,
    decode,
    encode,
)

TEAMS = ["payments", "search", "identity", "billing", "platform", "data", "mobile", "web"]
SERVICES = ["api", "worker", "frontend", "gateway", "jobs", "ml", "cache", "auth"]
ENVS = ["dev", "test", "staging", "prod"]
URL = "https://harbor.example.com"


def patterned(n: int, rng: random.Random) -> dict[str, bool]:
    return {
        f"{rng.choice(TEAMS)}-{rng.choice(SERVICES)}-{rng.choice(ENVS)}-{i}": i % 10 == 0
        for i in range(n)
    }


def randomized(n: int, rng: random.Random) -> dict[str, bool]:
    letters = string.ascii_lowercase + string.digits
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choices(letters, k=12)))
    return {name: i % 10 == 0 for i, name in enumerate(sorted(names))}


def copy_of(spaces: dict[str, bool]) -> Copy:
    return Copy({"harbor": RegistryCopy("harbor", URL, spaces)}, time.time())


def fits(kind: str, n: int) -> bool:
    maker = patterned if kind == "patterned" else randomized
    try:
        encode(copy_of(maker(n, random.Random(n))))
    except CopyTooLarge:
        return False
    return True


def most_that_fit(kind: str) -> int:
    low, high = 1_000, 1_000_000
    while high - low > 1_000:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(kind, middle) else (low, middle)
    return low


def main() -> int:
    print(
        "| spaces | names | JSON | compressed | Secret data (base64) | encode | decode |",
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in (1_000, 10_000, 100_000):
        for kind, maker in (("patterned", patterned), ("random", randomized)):
            spaces = maker(n, random.Random(n))
            copy = copy_of(spaces)
            began = time.perf_counter()
            try:
                data = encode(copy)
            except CopyTooLarge as exc:
                print(f"| {n:,} | {kind} | - | {exc} | - | - | - |")
                continue
            encoding = time.perf_counter() - began
            began = time.perf_counter()
            back = decode(data)
            decoding = time.perf_counter() - began
            assert back is not None
            assert dict(back.registries["harbor"].spaces) == spaces
            json_bytes = len(zlib.decompress(data))  # the JSON the copy inflates to
            print(
                f"| {n:,} | {kind} | {json_bytes / 1024:,.0f} KiB | {len(data) / 1024:,.1f} KiB | "
                f"{(len(data) + 2) // 3 * 4 / 1024:,.1f} KiB | {encoding * 1000:.0f} ms | "
                f"{decoding * 1000:.0f} ms |"
            )
    print()
    for kind in ("patterned", "random"):
        print(
            f"most {kind} spaces within the bound ({MAX_COMPRESSED_BYTES // 1024} KiB "
            f"compressed): about {most_that_fit(kind):,}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
