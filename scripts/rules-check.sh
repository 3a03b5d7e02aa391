#!/usr/bin/env bash
# `make rules-check`: promtool checks and unit-tests the chart's alerting rules
# (charts/kubevigil/files/prometheus-rules.yaml, the PrometheusRule's groups) with the tests in
# tests/prometheus/rules.test.yaml: per alert, a case where it fires and one where it does not.
# promtool comes from Debian's prometheus package, installed here when missing (its service is
# not started: this script only needs the promtool binary).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v promtool >/dev/null; then
  echo "rules-check: installing Debian's prometheus package (for promtool)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -n 1
promtool check rules "$root/charts/kubevigil/files/prometheus-rules.yaml"
promtool test rules "$root/tests/prometheus/rules.test.yaml"
