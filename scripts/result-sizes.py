#!/usr/bin/env python3
"""Median and p95 size (compact JSON bytes, as the API server stores them) of the results an
offline scan prints: WorkloadConfigurationScans and their summaries.

    scan-job scan -f demo -o json > wcs.json
    scan-job scan -f demo -o json --summary > wcss.json
    python3 scripts/result-sizes.py wcs.json wcss.json

Each argument is a `kind: List` as `scan-job scan -o json` prints it. The scan-time annotation
(which differs per run) is counted as it is printed.
"""

import json
import sys


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def main(paths):
    for path in paths:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)["items"]
        by_kind = {}
        for item in items:
            size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())
            by_kind.setdefault(item.get("kind", "?"), []).append(size)
        for kind, sizes in sorted(by_kind.items()):
            sizes.sort()
            print(
                f"{kind}: {len(sizes)} objects, median {percentile(sizes, 50)} B, "
                f"p95 {percentile(sizes, 95)} B, max {sizes[-1]} B, total {sum(sizes)} B"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
