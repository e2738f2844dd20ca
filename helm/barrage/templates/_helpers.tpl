{{/*
Names, labels and the pieces every pod of the chart shares. The master's and the
workers' pod templates are in _master.tpl and _workers.tpl: each is used by a Job
(mode job) or a Deployment (mode interactive).
*/}}

{{- define "barrage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
`<release>-<chart>`, or the release name when it already contains the chart name;
56 characters at most so that `-master`, `-workers`, ... still fit a DNS label.
*/}}
{{- define "barrage.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "barrage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The master's Service name: what workers pass to --master. */}}
{{- define "barrage.masterName" -}}
{{- printf "%s-master" (include "barrage.fullname" .) }}
{{- end }}

{{- define "barrage.workersName" -}}
{{- printf "%s-workers" (include "barrage.fullname" .) }}
{{- end }}

{{- define "barrage.mockName" -}}
{{- printf "%s-mock" (include "barrage.fullname" .) }}
{{- end }}

{{- define "barrage.scenarioConfigMap" -}}
{{- .Values.scenario.existingConfigMap | default (printf "%s-scenario" (include "barrage.fullname" .)) }}
{{- end }}

{{- define "barrage.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "barrage.fullname" .)) }}
{{- end }}

{{- define "barrage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "barrage.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/* Labels of every resource. Call with (dict "ctx" $ "component" "master"). */}}
{{- define "barrage.labels" -}}
helm.sh/chart: {{ include "barrage.chart" .ctx }}
{{ include "barrage.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: barrage
{{- end }}

{{/* Selector labels: stable for the life of a release. Same argument as barrage.labels. */}}
{{- define "barrage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "barrage.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "barrage.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The target host: target.host, else the mock's Service when it is enabled. */}}
{{- define "barrage.host" -}}
{{- if .Values.target.host }}
{{- .Values.target.host }}
{{- else if .Values.mock.enabled }}
{{- printf "http://%s:%d" (include "barrage.mockName" .) (int .Values.mock.port) }}
{{- end }}
{{- end }}

{{/* BARRAGE_CLUSTER_TOKEN, for the master and the workers. */}}
{{- define "barrage.clusterTokenEnv" -}}
{{- if .Values.auth.clusterToken }}
- name: BARRAGE_CLUSTER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "barrage.authSecret" . }}
      key: {{ .Values.auth.clusterTokenKey }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the master's and the workers' pods. */}}
{{- define "barrage.podCommon" -}}
# job: a failed pod is the Job's business (the master's verdict is never retried);
# interactive: Deployments restart.
restartPolicy: {{ eq .Values.mode "job" | ternary "Never" "Always" }}
serviceAccountName: {{ include "barrage.serviceAccountName" . }}
# The pods call no Kubernetes API.
automountServiceAccountToken: false
# No <SERVICE>_PORT variables: the namespace's Services are found by DNS, and such
# variables could shadow BARRAGE_* settings.
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/*
Spreads pods with the given selector labels across nodes: (dict "ctx" $ "component"
"worker" "mode" "soft|hard|none").
*/}}
{{- define "barrage.spread" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "barrage.selectorLabels" . | fromYaml)) }}
{{- if eq .mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        {{- toYaml $term | nindent 8 }}
{{- else if eq .mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - {{- toYaml $term | nindent 6 }}
{{- end }}
{{- end }}

{{/* Rejects combinations the schema cannot express, with a message naming the fix. */}}
{{- define "barrage.validate" -}}
{{- if and .Values.results.enabled (not (or .Values.results.json .Values.results.csv .Values.results.html)) }}
{{- fail "results.enabled is true but results.json, results.csv and results.html are all false: nothing would be written" }}
{{- end }}
{{- end }}
