{{/*
Expand the name of the chart.
*/}}
{{- define "etcd-registrar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "etcd-registrar.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "etcd-registrar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels: the Kubernetes recommended labels plus helm.sh/chart and commonLabels.
*/}}
{{- define "etcd-registrar.labels" -}}
helm.sh/chart: {{ include "etcd-registrar.chart" . }}
{{ include "etcd-registrar.selectorLabels" . }}
app.kubernetes.io/version: {{ include "etcd-registrar.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: etcd-registrar
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: only name and instance, so that they never change across upgrades.
*/}}
{{- define "etcd-registrar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "etcd-registrar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use.
*/}}
{{- define "etcd-registrar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "etcd-registrar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag: image.tag, default the chart's appVersion.
*/}}
{{- define "etcd-registrar.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Full image reference: repository:tag, or repository@digest when a digest is set
(repository:tag@digest keeps the tag readable; the digest wins at pull time).
*/}}
{{- define "etcd-registrar.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository (include "etcd-registrar.imageTag" .) .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "etcd-registrar.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Namespaces the controller watches: watchNamespaces, joined with commas ("" = all).
*/}}
{{- define "etcd-registrar.namespaces" -}}
{{- join "," .Values.watchNamespaces }}
{{- end }}

{{/*
Listen address of /healthz, /readyz and /metrics.
*/}}
{{- define "etcd-registrar.metricsAddress" -}}
{{- if contains ":" .Values.metrics.host }}
{{- printf "[%s]:%d" .Values.metrics.host (int .Values.metrics.port) }}
{{- else }}
{{- printf "%s:%d" .Values.metrics.host (int .Values.metrics.port) }}
{{- end }}
{{- end }}

{{/*
Whether a PodDisruptionBudget is rendered: explicitly enabled, or automatically when replicaCount > 1.
*/}}
{{- define "etcd-registrar.pdbEnabled" -}}
{{- if eq (toString .Values.podDisruptionBudget.enabled) "true" }}true
{{- else if and (eq (toString .Values.podDisruptionBudget.enabled) "auto") (gt (int .Values.replicaCount) 1) }}true
{{- end }}
{{- end }}

{{/*
Mount paths of the etcd credentials.
*/}}
{{- define "etcd-registrar.tlsDir" -}}/etc/etcd-registrar/etcd-tls{{- end }}
{{- define "etcd-registrar.caDir" -}}/etc/etcd-registrar/etcd-ca{{- end }}
{{- define "etcd-registrar.authDir" -}}/etc/etcd-registrar/etcd-auth{{- end }}

{{/*
Least privilege: read pods, write events. No wildcards, no secrets. Namespaces, leases or
other resources are added only when a feature that needs them (leader election, namespace
grants) lands in the controller.
*/}}
{{- define "etcd-registrar.rules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Static service grants as the --grants flag wants them: "ns=svc,svc;ns=svc" (namespaces sorted).
*/}}
{{- define "etcd-registrar.staticGrants" -}}
{{- $items := list -}}
{{- range $namespace, $services := . -}}
{{- $items = append $items (printf "%s=%s" $namespace (join "," $services)) -}}
{{- end -}}
{{- join ";" $items -}}
{{- end }}

{{/*
Read-only access to Namespaces (their allowed-services annotation), unless grants are off.
Namespaces are cluster-scoped, so this is a ClusterRole rule even in namespaced mode.
*/}}
{{- define "etcd-registrar.namespaceRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
"true" when the controller watches Nodes (their zone label): the JSON value format has a
"zone" field, and templates may use {zone} (docs/decisions/0008). Same rule as the
controller's mappingNeedsZones, except that a literal "{{zone}}" in a template also counts
(harmless: one read permission too many, never one too few).
*/}}
{{- define "etcd-registrar.needsNodes" -}}
{{- $c := .Values.config -}}
{{- if or (eq (toString $c.valueFormat) "json") (contains "{zone}" (toString $c.keyTemplate)) (contains "{zone}" (toString $c.valueTemplate)) -}}
true
{{- end -}}
{{- end }}

{{- define "etcd-registrar.nodeRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
{{- end }}
