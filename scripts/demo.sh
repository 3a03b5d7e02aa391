#!/usr/bin/env bash
# The one-command demo: a local real cluster, kubevigil installed by Helm exactly as the README
# says, and the k8s-bad-practices namespace scanned. The cluster keeps running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*" >&2; }

say "booting the local real cluster and importing kubevigil's images (first run builds Kubernetes from Go modules: ~15 min)"
KUBECONFIG=$(bash scripts/cluster.sh up | tail -n 1)
export KUBECONFIG
tools=$(bash scripts/tools.sh)
export PATH="$tools:$PATH"

say "the install namespace with Pod Security restricted enforced"
kubectl create namespace kubevigil --dry-run=client -o yaml | kubectl apply -f - >&2
kubectl label namespace kubevigil pod-security.kubernetes.io/enforce=restricted --overwrite >&2

say "helm upgrade --install kubevigil ./charts/kubevigil -n kubevigil --create-namespace --set clusterName=local --set capabilities.continuousScan=enable"
helm upgrade --install kubevigil ./charts/kubevigil -n kubevigil --create-namespace \
  --set clusterName=local --set capabilities.continuousScan=enable --wait --timeout 3m >&2

say "applying the demo namespace: demo/k8s-bad-practices.yaml"
kubectl apply -f demo/k8s-bad-practices.yaml >&2

say "waiting for the scan results (bounded: 120 s)"
# One summary per workload (4), per ServiceAccount (node-agent and the namespace's default), for
# the RoleBinding itself, and per (subject, role, binding) triplet of its two subjects: 9 in all.
want=9
deadline=$((SECONDS + 120))
while :; do
  have=$(kubectl get wcss -n k8s-bad-practices --no-headers 2>/dev/null | grep -c . || true)
  if [ "$have" -ge "$want" ]; then break; fi
  if [ $SECONDS -ge $deadline ]; then
    echo "demo: only $have of $want summaries after 120 s; scan Jobs and the controller log follow" >&2
    kubectl get jobs -n kubevigil -l app.kubernetes.io/component=scan-job >&2 || true
    kubectl logs -n kubevigil deployment/kubevigil-controller --tail=20 >&2 || true
    exit 1
  fi
  sleep 2
done

say "kubectl get workloadconfigurationscansummaries -n k8s-bad-practices"
kubectl get workloadconfigurationscansummaries -n k8s-bad-practices
say "kubectl get -n k8s-bad-practices workloadconfigurationscansummaries deployment-trusty-reverse-proxy -o yaml"
kubectl get -n k8s-bad-practices workloadconfigurationscansummaries deployment-trusty-reverse-proxy -o yaml

cat >&2 <<MSG

The cluster is still running. Explore it with:
  export KUBECONFIG=$KUBECONFIG
  export PATH=$tools:\$PATH
  kubectl get kubevigil -A
  kubectl get jobs -n kubevigil -l app.kubernetes.io/component=scan-job
  kubectl logs -n kubevigil deployment/kubevigil-controller
  kubectl get --raw /api/v1/namespaces/kubevigil/services/kubevigil-controller-metrics:8080/proxy/readyz
Stop it with: make cluster-down
MSG
