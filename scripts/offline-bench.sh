#!/usr/bin/env bash
# The offline scan's time and peak memory (BENCHMARKS.md, "Offline scan"): `scan-job scan -f` on
# N generated Deployments (scripts/gen-workloads.py) in table, json and yaml output, under
# /usr/bin/time -v; then, in the same run, checkov on the 2,000-workload file.
#
#   bash scripts/offline-bench.sh [N...]          # default: 2000 20000 100000
#
# Environment: SCAN_JOB (default: the release binary, built if missing), CHECKOV (default:
# checkov 3.3.30 in a venv under ~/.cache/checkov-venv, installed from PyPI if
# missing; CHECKOV=skip leaves it out), WORK (default: a temporary directory).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2000 20000 100000)
work="${WORK:-$(mktemp -d)}"
scan_job="${SCAN_JOB:-$target/release/scan-job}"
if [ -z "${SCAN_JOB:-}" ]; then
    (cd "$here" && cargo build -q --release -p scan-job --bin scan-job)
fi

# One measured run (output to /dev/null): prints "<wall seconds> <peak RSS KiB>".
measure() {
    local log="$work/time.log"
    /usr/bin/time -v -o "$log" "$@" > /dev/null 2> "$work/err" || true
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    echo "$wall $rss"
}

echo "scan-job: $scan_job ($("$scan_job" --version))"
printf '%-9s %-6s %9s %12s %14s\n' manifests output "wall (s)" "peak RSS" "per manifest"
for n in "${sizes[@]}"; do
    file="$work/workloads-$n.yaml"
    [ -s "$file" ] || python3 "$here/scripts/gen-workloads.py" "$n" --out "$file"
    for output in table json yaml; do
        read -r wall rss < <(measure "$scan_job" scan -f "$file" -o "$output" --color never)
        awk -v n="$n" -v o="$output" -v w="$wall" -v r="$rss" 'BEGIN {
            printf "%-9d %-6s %9.2f %8.1f MiB %11.1f us\n", n, o, w, r / 1024, w / n * 1e6 }'
    done
done

if [ "${CHECKOV:-}" = skip ]; then
    exit 0
fi
checkov="${CHECKOV:-$HOME/.cache/checkov-venv/bin/checkov}"
if [ ! -x "$checkov" ]; then
    python3 -m venv "$HOME/.cache/checkov-venv"
    "$HOME/.cache/checkov-venv/bin/pip" install -q checkov==3.3.30
fi
file="$work/workloads-2000.yaml"
[ -s "$file" ] || python3 "$here/scripts/gen-workloads.py" 2000 --out "$file"
echo "checkov $("$checkov" --version) on 2,000 workloads (--framework kubernetes):"
read -r cwall crss < <(measure "$checkov" -f "$file" --framework kubernetes --quiet --compact)
awk -v w="$cwall" -v r="$crss" 'BEGIN { printf "checkov  %10.2f s %8.1f MiB\n", w, r / 1024 }'
for output in table json yaml; do
    read -r wall _ < <(measure "$scan_job" scan -f "$file" -o "$output" --color never)
    awk -v o="$output" -v w="$wall" -v c="$cwall" 'BEGIN { printf "scan-job -o %-5s %6.2f s: %.0fx faster than checkov\n", o, w, c / w }'
done
