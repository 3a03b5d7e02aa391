{{/*
Chart name. Fixed to "kubevigil": the controller labels its scan Jobs with
app.kubernetes.io/name=kubevigil, so the chart does not allow overriding it.
*/}}
{{- define "kubevigil.name" -}}
kubevigil
{{- end }}

{{/*
Fully qualified app name: the release name when it already contains "kubevigil", otherwise
"<release>-kubevigil". Truncated to 40 characters so that "<fullname>-scan-job-<suffix>" and
similar derived names stay within the 63-character label/name limits.
*/}}
{{- define "kubevigil.fullname" -}}
{{- $name := include "kubevigil.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/* Chart label value: name-version. */}}
{{- define "kubevigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* Labels every object of the chart carries. */}}
{{- define "kubevigil.labels" -}}
helm.sh/chart: {{ include "kubevigil.chart" . }}
app.kubernetes.io/name: {{ include "kubevigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubevigil
{{- end }}

{{/* Selector labels of the controller pods (stable across upgrades: never add version here). */}}
{{- define "kubevigil.controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubevigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Labels of controller objects. */}}
{{- define "kubevigil.controller.labels" -}}
{{ include "kubevigil.labels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Labels of scan-job objects (ServiceAccount, RBAC). */}}
{{- define "kubevigil.scanJob.labels" -}}
{{ include "kubevigil.labels" . }}
app.kubernetes.io/component: scan-job
{{- end }}

{{/* Names. */}}
{{- define "kubevigil.controller.fullname" -}}
{{- printf "%s-controller" (include "kubevigil.fullname" .) -}}
{{- end }}

{{- define "kubevigil.scanJob.fullname" -}}
{{- printf "%s-scan-job" (include "kubevigil.fullname" .) -}}
{{- end }}

{{- define "kubevigil.controller.serviceAccountName" -}}
{{- include "kubevigil.controller.fullname" . -}}
{{- end }}

{{- define "kubevigil.scanJob.serviceAccountName" -}}
{{- include "kubevigil.scanJob.fullname" . -}}
{{- end }}

{{- define "kubevigil.configMapName" -}}
{{- printf "%s-config" (include "kubevigil.fullname" .) -}}
{{- end }}

{{- define "kubevigil.metricsServiceName" -}}
{{- printf "%s-metrics" (include "kubevigil.controller.fullname" .) -}}
{{- end }}

{{- define "kubevigil.leaseName" -}}
{{- printf "%s-leader" (include "kubevigil.controller.fullname" .) -}}
{{- end }}

{{/*
Image reference: "repository@digest" when a digest is given, else "repository:tag" (the tag
defaults to the chart's appVersion). The scan-job reference is rendered once into the
controller's configuration, and the admission policy reads it from there.
Usage: include "kubevigil.image" (dict "image" .Values.controller.image "root" .)
*/}}
{{- define "kubevigil.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion | toString -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end }}

{{/* Whether the controller (and everything but the CRDs) is installed. */}}
{{- define "kubevigil.enabled" -}}
{{- if eq (toString .Values.capabilities.continuousScan) "enable" -}}true{{- end -}}
{{- end }}

{{/*
Validation that the schema cannot express, with messages that say what to do. Included by
every template so `helm template`/`install` fail before rendering anything.
*/}}
{{- define "kubevigil.validate" -}}
{{- $mode := toString .Values.capabilities.continuousScan -}}
{{- if not (has $mode (list "enable" "disable")) -}}
{{- fail (printf "capabilities.continuousScan must be \"enable\" or \"disable\", got %q" $mode) -}}
{{- end -}}
{{- range $i, $rule := .Values.continuousScanning.matchingRules -}}
{{- $groups := $rule.apiGroups | default (list "") -}}
{{- if and (has "" $groups) (has "secrets" $rule.resources) -}}
{{- fail (printf "continuousScanning.matchingRules[%d]: core \"secrets\" cannot be watched: kubevigil never reads Secret data (remove it from resources)" $i) -}}
{{- end -}}
{{- end -}}
{{- /* RBAC results depend on the bound role: the controller refuses bindings without roles. */ -}}
{{- $rbac := list -}}
{{- range .Values.continuousScanning.matchingRules -}}
{{- if has "rbac.authorization.k8s.io" (.apiGroups | default list) -}}
{{- $rbac = concat $rbac .resources -}}
{{- end -}}
{{- end -}}
{{- if or (has "rolebindings" $rbac) (has "clusterrolebindings" $rbac) -}}
{{- $missing := list -}}
{{- range (list "roles" "clusterroles") -}}
{{- if not (has . $rbac) -}}{{- $missing = append $missing . -}}{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "continuousScanning.matchingRules: rolebindings or clusterrolebindings are watched but not %s: RBAC results depend on the bound roles, add them to the rule for rbac.authorization.k8s.io" (join " and " $missing)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.enabled=true (the ServiceMonitor scrapes the metrics Service)" -}}
{{- end -}}
{{- if and .Values.admissionPolicy.enabled (not (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version)) -}}
{{- fail (printf "admissionPolicy.enabled=true needs ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, Kubernetes 1.30 or later), this is Kubernetes %s: upgrade the cluster, or set admissionPolicy.enabled=false to install without the policy" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.apiServer.cidrs) -}}
{{- fail "networkPolicy.enabled=true needs networkPolicy.apiServer.cidrs: the API server's addresses as pods reach them (kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes), e.g. --set networkPolicy.apiServer.cidrs={192.0.2.10/32}" -}}
{{- end -}}
{{- if gt (int .Values.controller.kubeApiQps) (int .Values.controller.kubeApiBurst) -}}
{{- fail (printf "controller.kubeApiBurst (%v) must be at least controller.kubeApiQps (%v)" .Values.controller.kubeApiBurst .Values.controller.kubeApiQps) -}}
{{- end -}}
{{- end }}

{{/*
RBAC rules (get/list/watch or the given verbs) for every kind in continuousScanning.matchingRules.
An empty apiGroups list means the core group, as in Kubescape's format.
Usage: include "kubevigil.matchingRulesRBAC" (dict "rules" .Values.continuousScanning.matchingRules "verbs" (list "get" "list"))
*/}}
{{- define "kubevigil.matchingRulesRBAC" -}}
{{- range .rules }}
- apiGroups: {{ .apiGroups | default (list "") | toJson }}
  resources: {{ .resources | toJson }}
  verbs: {{ $.verbs | toJson }}
{{- end }}
{{- end }}

{{/*
The controller's configuration file (config.yaml), one document holding everything the
controller needs to watch, batch and spawn scan Jobs. Keys are sorted (toYaml).
*/}}
{{- define "kubevigil.config" -}}
{{- $rules := list -}}
{{- range .Values.continuousScanning.matchingRules -}}
{{- $rules = append $rules (dict "apiGroups" (.apiGroups | default (list "")) "apiVersions" .apiVersions "resources" .resources) -}}
{{- end -}}
{{- $config := dict
  "clusterName" .Values.clusterName
  "namespace" .Release.Namespace
  "includeNamespaces" (.Values.includeNamespaces | default list)
  "excludeNamespaces" (.Values.excludeNamespaces | default list)
  "continuousScanning" (dict
    "matchingRules" $rules
    "debounce" .Values.continuousScanning.debounce
    "resyncPeriod" .Values.continuousScanning.resyncPeriod
    "rescanAfter" (.Values.continuousScanning.rescanAfter | default "off"))
  "scanJob" (dict
    "image" (include "kubevigil.image" (dict "image" .Values.scanJob.image "root" .))
    "imagePullPolicy" .Values.scanJob.image.pullPolicy
    "serviceAccountName" (include "kubevigil.scanJob.serviceAccountName" .)
    "configMapName" (include "kubevigil.configMapName" .)
    "resources" .Values.scanJob.resources
    "batchSize" .Values.scanJob.batchSize
    "maxConcurrentJobs" .Values.scanJob.maxConcurrentJobs
    "ttlSecondsAfterFinished" .Values.scanJob.ttlSecondsAfterFinished
    "activeDeadlineSeconds" .Values.scanJob.activeDeadlineSeconds
    "backoffLimit" .Values.scanJob.backoffLimit
    "labels" (dict "app.kubernetes.io/instance" .Release.Name))
  "controller" (dict
    "logLevel" .Values.controller.logLevel
    "kubeApiQps" .Values.controller.kubeApiQps
    "kubeApiBurst" .Values.controller.kubeApiBurst
    "metricsPort" .Values.metrics.port
    "perResourceMetrics" .Values.metrics.perResourceSeries
    "leaderElection" (dict
      "enabled" (gt (int .Values.controller.replicas) 1)
      "leaseName" (include "kubevigil.leaseName" .)))
  "controlsConfig" (.Values.controlsConfig | default dict)
  "exceptions" (.Values.exceptions | default list)
  "postureEvents" (dict
    "enabled" .Values.postureEvents.enabled
    "severityThreshold" .Values.postureEvents.severityThreshold
    "onFirstResult" .Values.postureEvents.onFirstResult)
  "openReports" (dict "enabled" .Values.openReports.enabled)
-}}
{{- with .Values.namespaceSelector -}}
{{- $_ := set $config "namespaceSelector" . -}}
{{- end -}}
{{- if and .Values.skipLabel .Values.skipLabel.key -}}
{{- $_ := set $config "skipLabel" (dict "key" .Values.skipLabel.key "value" (toString .Values.skipLabel.value)) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end }}

{{/*
Whether the controller watches Namespaces for namespaceSelector ("true" or empty).
*/}}
{{- define "kubevigil.namespaceSelector.enabled" -}}
{{- with .Values.namespaceSelector -}}
{{- if or .matchLabels .matchExpressions }}true{{ end -}}
{{- end -}}
{{- end }}

{{/*
A CEL condition that holds when every container of the Job's pod template (containers,
initContainers and ephemeralContainers) satisfies `predicate`, a CEL expression over `c`.
Null-safe: an absent list holds trivially (other rules require the one container).
Usage: include "kubevigil.admission.everyContainer" "has(c.image)"
*/}}
{{- define "kubevigil.admission.everyContainer" -}}
{{- $parts := list -}}
{{- range (list "containers" "initContainers" "ephemeralContainers") -}}
{{- $list := printf "object.spec.template.spec.%s" . -}}
{{- $parts = append $parts (printf "(!has(%s) || %s.all(c, %s))" $list $list $) -}}
{{- end -}}
{{- join "\n&& " $parts -}}
{{- end }}

{{/*
Egress rules of the controller and the scan pods (networkpolicy.yaml): TCP to the API server's
addresses and ports, and DNS when networkPolicy.dns.enabled.
*/}}
{{- define "kubevigil.networkPolicy.egress" -}}
- to:
    {{- range .Values.networkPolicy.apiServer.cidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- if .Values.networkPolicy.dns.enabled }}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
{{- end }}
