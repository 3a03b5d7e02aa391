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

# The admission policy (issue 22): rendered with its binding by default, never when disabled or
# without the controller; its constants follow the values; every message carries the prefix the
# controller recognises.
count() { grep -c "^kind: $1\$" "$2" || true; }
for kind in ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding; do
  [[ $(count "$kind" "$out/enable.yaml") == 1 ]] || { echo "the default render has no $kind" >&2; exit 1; }
  [[ $(count "$kind" "$out/disable.yaml") == 0 ]] || { echo "continuousScan=disable renders a $kind" >&2; exit 1; }
done
"$helm" template kubevigil "$chart" -n kubevigil --set admissionPolicy.enabled=false >"$out/no-policy.yaml"
if grep -q '^kind: ValidatingAdmissionPolicy' "$out/no-policy.yaml"; then
  echo "admissionPolicy.enabled=false still renders the admission policy" >&2; exit 1
fi
messages=$(grep -c '^      message: ' "$out/enable.yaml" || true)
prefixed=$(grep -c '^      message: "kubevigil admission: ' "$out/enable.yaml" || true)
[[ $messages -ge 16 && $messages == "$prefixed" ]] \
  || { echo "admission policy: $prefixed of $messages messages start with 'kubevigil admission: '" >&2; exit 1; }
"$helm" template kubevigil "$chart" -n kubevigil --set scanJob.image.tag=9.9.9 >"$out/tag.yaml"
grep -q 'message: "kubevigil admission: the scan Job must run image ghcr.io/kubevigil/scan-job:9.9.9"' "$out/tag.yaml" \
  || { echo "the admission policy does not follow scanJob.image.tag" >&2; exit 1; }
grep -q 'kubernetes.io/metadata.name: kubevigil$' "$out/enable.yaml" \
  || { echo "the admission policy's binding does not select the release namespace" >&2; exit 1; }
# Before Kubernetes 1.30 (no admissionregistration.k8s.io/v1 policies) the chart installs
# without it, when told to (reject below checks it refuses otherwise).
"$helm" template kubevigil "$chart" -n kubevigil --kube-version 1.29.5 --set admissionPolicy.enabled=false >/dev/null
echo "admission policy: $messages rules, rendered by default, not when disabled"

# NetworkPolicies only when asked for.
[[ $(count NetworkPolicy "$out/enable.yaml") == 0 ]] || { echo "NetworkPolicies rendered by default" >&2; exit 1; }
"$helm" template kubevigil "$chart" -n kubevigil --set networkPolicy.enabled=true \
  --set 'networkPolicy.apiServer.cidrs={192.0.2.10/32}' >"$out/netpol.yaml"
[[ $(count NetworkPolicy "$out/netpol.yaml") == 2 ]] \
  || { echo "networkPolicy.enabled=true must render two NetworkPolicies (controller, scan pods)" >&2; exit 1; }
echo "network policies: none by default, 2 when enabled"

# OpenReports (issue 21): off by default, and then nothing of it is rendered (no RBAC, no
# openReports config switched on); on: the scan Jobs' and the controller's ClusterRoles.
if grep -q 'openreports.io' "$out/enable.yaml"; then
  echo "openReports is off by default, but openreports.io appears in the render" >&2; exit 1
fi
grep -q '^      enabled: false$' <(grep -A1 '^    openReports:' "$out/enable.yaml") \
  || { echo "the config does not carry openReports.enabled: false" >&2; exit 1; }
"$helm" template kubevigil "$chart" -n kubevigil --set openReports.enabled=true >"$out/openreports.yaml"
[[ $(grep -c 'apiGroups: \["openreports.io"\]' "$out/openreports.yaml") == 2 ]] \
  || { echo "openReports.enabled=true must grant openreports.io to scan Jobs and controller" >&2; exit 1; }
# PostureExceptions: namespace admin manages them (aggregated), edit only reads them.
grep -q 'rbac.authorization.k8s.io/aggregate-to-admin: "true"' "$out/enable.yaml" \
  || { echo "no PostureException role aggregated to admin" >&2; exit 1; }
echo "openreports: nothing when off, 2 ClusterRoles when on; posture exceptions aggregated to admin"

# The notes warn about the install namespace's Pod Security label. Without a cluster (client
# dry run) lookup finds no namespace, as on a first install with --create-namespace.
notes() { KUBECONFIG=/dev/null "$helm" install kubevigil "$chart" -n kubevigil --dry-run=client "$@"; }
notes >"$out/notes.txt"
notes --set namespace.podSecurityLabelCheck=false >"$out/notes-off.txt"
grep -q 'kubectl label namespace kubevigil pod-security.kubernetes.io/enforce=restricted' "$out/notes.txt" \
  || { echo "the notes do not say how to label the namespace" >&2; exit 1; }
if grep -q 'pod-security.kubernetes.io/enforce' "$out/notes-off.txt"; then
  echo "namespace.podSecurityLabelCheck=false still checks the namespace" >&2; exit 1
fi
echo "notes: the Pod Security label warning, off with namespace.podSecurityLabelCheck=false"

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
reject "digest" --set scanJob.image.digest=sha256:short
reject "networkPolicy.apiServer.cidrs" --set networkPolicy.enabled=true
reject "Kubernetes 1.30 or later" --kube-version 1.29.5
# Bindings without roles: RBAC results depend on the bound roles (the controller would refuse
# the config at startup; the chart says so at install instead).
reject "rolebindings or clusterrolebindings are watched but not roles and clusterroles" \
  --set 'continuousScanning.matchingRules[0].apiGroups[0]=rbac.authorization.k8s.io' \
  --set 'continuousScanning.matchingRules[0].apiVersions[0]=v1' \
  --set 'continuousScanning.matchingRules[0].resources[0]=rolebindings'

# The README's values table is generated from values.yaml's comments; it must not drift.
python3 scripts/values-table.py --check
