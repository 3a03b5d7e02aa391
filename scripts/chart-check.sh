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

# Scope (issue 20): namespaces are read only with a namespaceSelector; patterns and the
# selector reach the controller's configuration.
ns_rule='    resources: \["namespaces"\]'
# The controller's own ClusterRole (the scan Jobs may get namespaces for exceptions' selectors).
controller_role() { awk '/^kind: ClusterRole$/{r=1} /^---/{r=0} r' "$1" | awk '/name: kubevigil-controller$/,/^kind: /'; }
if controller_role "$out/enable.yaml" | grep -q "^$ns_rule"; then
  echo "without namespaceSelector the controller must not get a rule for namespaces alone" >&2; exit 1
fi
"$helm" template kubevigil "$chart" -n kubevigil --set 'includeNamespaces={team-*}' \
  --set namespaceSelector.matchLabels.scan=yes >"$out/selector.yaml"
controller_role "$out/selector.yaml" | grep -q "^$ns_rule" \
  || { echo "namespaceSelector set, but the controller may not watch namespaces" >&2; exit 1; }
grep -q '^    - team-\*$' "$out/selector.yaml" && grep -q '^        scan: "yes"$' "$out/selector.yaml" \
  || { echo "includeNamespaces patterns or namespaceSelector missing from the configuration" >&2; exit 1; }
echo "scope: namespaces watched only with namespaceSelector; patterns and selector configured"

# Reading results: the namespaced kinds aggregated to view/edit/admin, read-only; the
# cluster-scoped summaries in a role of their own, aggregated to nothing.
view=$(awk '/name: kubevigil-results-view$/,/^---/' "$out/enable.yaml")
for role in view edit admin; do
  grep -q "rbac.authorization.k8s.io/aggregate-to-$role: \"true\"" <<<"$view" \
    || { echo "the results role is not aggregated to $role" >&2; exit 1; }
done
if grep -q '"configurationscansummaries"' <<<"$view" || grep -Eq '"(create|update|patch|delete)"' <<<"$view"; then
  echo "the role aggregated to view must only read the namespaced result kinds" >&2; exit 1
fi
reader=$(awk '/name: kubevigil-summaries-reader$/,/^---/' "$out/enable.yaml")
grep -q 'resources: \["configurationscansummaries"\]' <<<"$reader" && ! grep -q aggregate-to <<<"$reader" \
  || { echo "the summaries reader role must read configurationscansummaries and aggregate to nothing" >&2; exit 1; }
"$helm" template kubevigil "$chart" -n kubevigil --set resultsAccess.aggregateToDefaultRoles=false \
  --set resultsAccess.summariesReaderRole=false >"$out/no-readers.yaml"
if grep -Eq 'kubevigil-(results-view|summaries-reader)$' "$out/no-readers.yaml"; then
  echo "resultsAccess disabled still renders the reader roles" >&2; exit 1
fi
echo "reading results: aggregated read-only role for view/edit/admin, a separate summaries reader"

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

# The PrometheusRule and the Grafana dashboard: off by default; when on, the rule's groups are
# files/prometheus-rules.yaml (what promtool tests) and the dashboard is valid JSON.
for k in PrometheusRule; do
  [[ $(count "$k" "$out/enable.yaml") == 0 ]] || { echo "$k rendered by default" >&2; exit 1; }
done
grep -q 'kubevigil-posture.json' "$out/enable.yaml" && { echo "dashboard rendered by default" >&2; exit 1; }
"$helm" lint --strict "$chart" --set metrics.prometheusRule.enabled=true --set metrics.grafanaDashboard.enabled=true >/dev/null
"$helm" template kubevigil "$chart" -n kubevigil --set metrics.prometheusRule.enabled=true \
  --set metrics.grafanaDashboard.enabled=true --set postureEvents.enabled=false >"$out/observe.yaml"
python3 - "$out/observe.yaml" "$chart/files/prometheus-rules.yaml" "$chart/files/grafana-dashboard.json" <<'PY'
import json, sys
rendered, rules_file, dashboard_file = sys.argv[1:]
docs = open(rendered).read().split("\n---\n")
rule = [d for d in docs if "kind: PrometheusRule" in d]
board = [d for d in docs if "kubevigil-posture.json" in d and "grafana_dashboard" in d]
assert len(rule) == 1 and len(board) == 1, "PrometheusRule and dashboard ConfigMap must render once"
for alert in ("KubevigilNewCriticalFailure", "KubevigilScansFailing", "KubevigilWatchedKindNotReady", "KubevigilControllerDown"):
    assert alert in rule[0] and alert in open(rules_file).read(), alert
json.load(open(dashboard_file))
assert "events.k8s.io" not in [d for d in docs if "scan-job" in d and "kind: ClusterRole\n" in d][0], "postureEvents.enabled=false must not grant events"
print("PrometheusRule (4 alerts) and Grafana dashboard rendered when enabled; scan Jobs' events grant follows postureEvents.enabled")
PY
grep -q 'events.k8s.io' "$out/enable.yaml" || { echo "scan Jobs must be granted create on events by default" >&2; exit 1; }

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
reject "severityThreshold" --set postureEvents.severityThreshold=Severe
reject "includeNamespaces" --set 'includeNamespaces={Team_A}'
reject "operator" --set-json 'namespaceSelector={"matchExpressions":[{"key":"a","operator":"Has"}]}'
# Bindings without roles: RBAC results depend on the bound roles (the controller would refuse
# the config at startup; the chart says so at install instead).
reject "rolebindings or clusterrolebindings are watched but not roles and clusterroles" \
  --set 'continuousScanning.matchingRules[0].apiGroups[0]=rbac.authorization.k8s.io' \
  --set 'continuousScanning.matchingRules[0].apiVersions[0]=v1' \
  --set 'continuousScanning.matchingRules[0].resources[0]=rolebindings'

# The README's values table is generated from values.yaml's comments; it must not drift.
python3 scripts/values-table.py --check
