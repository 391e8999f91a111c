"""ZIP code → place: the cost of the first look-up in a process (building the table),
its memory, and a look-up afterwards, against the dataset package's own look-up.

    .venv/bin/python bench/zip_places.py [LOOKUPS]

Run in a fresh process: the build is measured once.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def table_size(table: dict[str, Any]) -> int:
    """Bytes of the dict, its keys and the distinct places with their strings."""
    size = sys.getsizeof(table) + sum(sys.getsizeof(k) for k in table)
    seen: set[int] = set()
    for place in table.values():
        if id(place) not in seen:
            seen.add(id(place))
            size += sys.getsizeof(place)
            for text in (place.state, place.county, place.timezone):
                if id(text) not in seen:
                    seen.add(id(text))
                    size += sys.getsizeof(text)
    return size


def main() -> None:
    lookups = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    from service import postal

    before = rss_mib()
    started = time.perf_counter()
    table = postal.places()
    build = time.perf_counter() - started
    grown = rss_mib() - before
    python_heap = table_size(table) / 2**20
    codes = list(table)
    rng = random.Random(7)
    sample = [rng.choice(codes) + rng.choice(["", "-1234"]) for _ in range(lookups)]
    started = time.perf_counter()
    for code in sample:
        postal.place_for(code)
    per_lookup = (time.perf_counter() - started) / lookups * 1e6

    import zipcodes

    reference_n = 300
    started = time.perf_counter()
    for code in sample[:reference_n]:
        zipcodes.matching(code)
    reference = (time.perf_counter() - started) / reference_n * 1e6
    print(f"{len(table):,} ZIP codes, {len(set(table.values())):,} distinct places "
          f"(zipcodes {postal.DATASET_VERSION})")
    print(f"first look-up (builds the table): {build:.2f} s; RSS +{grown:.1f} MiB "
          f"(of which the table's Python objects {python_heap:.1f} MiB)")
    print(f"place_for: {per_lookup:.2f} µs per look-up over {lookups:,}")
    print(f"reference, zipcodes.matching: {reference:,.0f} µs per look-up "
          f"({reference / per_lookup:,.0f}× slower)")


if __name__ == "__main__":
    main()
