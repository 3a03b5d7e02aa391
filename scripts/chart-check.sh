#!/usr/bin/env bash
# helm lint and helm template of the chart, including values the schema must reject.
set -euo pipefail
cd "$(dirname "$0")/.."
helm="$(bash scripts/tools.sh)/helm"
chart=charts/kubevigil
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$helm" lint --strict "$chart" --set clusterName=ci --set capabilities.continuousScan=enable
for mode in enable disable; do
  "$helm" template kubevigil "$chart" -n kubevigil --set clusterName=ci \
    --set capabilities.continuousScan=$mode >"$out/$mode.yaml"
  echo "helm template (continuousScan=$mode): $(grep -c '^kind:' "$out/$mode.yaml") objects"
done
grep -q '^kind: Deployment' "$out/enable.yaml" || { echo "enable renders no controller Deployment" >&2; exit 1; }
if grep -q '^kind: Deployment' "$out/disable.yaml"; then
  echo "continuousScan=disable still renders the controller Deployment" >&2; exit 1
fi

# Values the schema must reject, each with the text the error must contain.
reject() {
  local want=$1; shift
  if "$helm" template kubevigil "$chart" -n kubevigil "$@" >/dev/null 2>"$out/err"; then
    echo "helm template $* succeeded, but must fail" >&2; exit 1
  fi
  if ! grep -q -- "$want" "$out/err"; then
    echo "helm template $* failed without naming '$want':" >&2; cat "$out/err" >&2; exit 1
  fi
  echo "rejected as expected: $*"
}
reject "enable" --set capabilities.continuousScan=bad
reject "batchSize" --set scanJob.batchSize=0
# Bindings without roles: RBAC results depend on the bound roles (the controller would refuse
# the config at startup; the chart says so at install instead).
reject "rolebindings or clusterrolebindings are watched but not roles and clusterroles" \
  --set 'continuousScanning.matchingRules[0].apiGroups[0]=rbac.authorization.k8s.io' \
  --set 'continuousScanning.matchingRules[0].apiVersions[0]=v1' \
  --set 'continuousScanning.matchingRules[0].resources[0]=rolebindings'

# The README's values table is generated from values.yaml's comments; it must not drift.
python3 scripts/values-table.py --check
