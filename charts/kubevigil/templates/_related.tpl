{{/*
Read-only rules for the related kinds a scan reads besides its targets: the one table in
engine/src/related.rs (kubevigil_engine::related). controller/tests/related_rbac.rs renders the
chart and fails when these rules and the table differ. Never Secrets.
Arguments: "verbs" (a list).
*/}}
{{- define "kubevigil.relatedRules" -}}
- apiGroups: [""]
  resources: ["services", "configmaps", "persistentvolumeclaims"]
  verbs: {{ toJson .verbs }}
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies", "ingresses"]
  verbs: {{ toJson .verbs }}
# Optional CRDs: read when installed (a missing CRD is skipped).
- apiGroups: ["cilium.io"]
  resources: ["ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"]
  verbs: {{ toJson .verbs }}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: {{ toJson .verbs }}
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices", "gateways"]
  verbs: {{ toJson .verbs }}
{{- end }}
