{{/*
The master: its command line and its pod template, shared by master-job.yaml (mode
job) and master-deployment.yaml (mode interactive).
*/}}

{{- define "barrage.master.args" -}}
- master
- --scenario
- {{ printf "/scenario/%s" .Values.scenario.fileName | quote }}
{{- with (include "barrage.host" .) }}
- --host
- {{ . | quote }}
{{- end }}
{{- $load := .Values.load }}
{{- if $load.stages }}
{{- range $load.stages }}
- --stage
- {{ printf "%s:%d" .duration (int .users) }}{{ with .spawnRate }}:{{ . }}{{ end }}
{{- end }}
{{- else }}
{{- if not (kindIs "invalid" $load.users) }}
- --users
- {{ int $load.users | quote }}
{{- end }}
{{- if not (kindIs "invalid" $load.spawnRate) }}
- --spawn-rate
- {{ $load.spawnRate | toString | quote }}
{{- end }}
{{- end }}
{{- with $load.runTime }}
- --run-time
- {{ . | quote }}
{{- end }}
{{- with $load.preset }}
- --preset
- {{ . | quote }}
{{- end }}
{{- range $load.thresholds }}
- --threshold
- {{ . | quote }}
{{- end }}
{{- range $load.abortThresholds }}
- --threshold-abort
- {{ . | quote }}
{{- end }}
{{- with $load.tags }}
- --tags
- {{ join "," . | quote }}
{{- end }}
{{- with $load.excludeTags }}
- --exclude-tags
- {{ join "," . | quote }}
{{- end }}
- --stop-timeout
- {{ $load.stopTimeout | quote }}
{{- if not (kindIs "invalid" $load.exitCodeOnError) }}
- --exit-code-on-error
- {{ int $load.exitCodeOnError | quote }}
{{- end }}
- --on-worker-loss
- {{ $load.onWorkerLoss | quote }}
- --expect-workers
- {{ int .Values.workers.replicas | quote }}
{{- with .Values.master.expectWorkersMaxWait }}
- --expect-workers-max-wait
- {{ . | quote }}
{{- end }}
- --master-bind-host
- {{ .Values.master.bindAddress | quote }}
- --master-bind-port
- {{ int .Values.master.port | quote }}
{{- if not .Values.auth.clusterToken }}
{{- /* The user turned the cluster token off: the master binds beyond loopback only when told that workers are unauthenticated. */}}
- --allow-unauthenticated-workers
{{- end }}
{{- if .Values.web.enabled }}
{{- /* Beyond loopback the master insists on --web-auth, and --web-auth on BARRAGE_WEB_TOKEN. */}}
- --web-host
- {{ .Values.master.bindAddress | quote }}
- --web-port
- {{ int .Values.web.port | quote }}
- --web-auth
{{- if and .Values.web.startFromUi (eq .Values.mode "interactive") }}
- --start-from-ui
{{- end }}
{{- else }}
- --headless
{{- end }}
{{- if .Values.master.onlySummary }}
- --only-summary
{{- end }}
{{- if .Values.results.enabled }}
{{- if .Values.results.json }}
- --json
- /results/report.json
{{- end }}
{{- if .Values.results.csv }}
- --csv
- /results/barrage
{{- end }}
{{- if .Values.results.html }}
- --html
- /results/report.html
{{- end }}
{{- end }}
{{- range .Values.master.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- /* User classes are positional: last. */}}
{{- range $load.classes }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The master's environment: tokens, API keys from Secrets, extraEnv. */}}
{{- define "barrage.master.env" -}}
{{- include "barrage.clusterTokenEnv" . }}
{{- if .Values.web.enabled }}
- name: BARRAGE_WEB_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "barrage.authSecret" . }}
      key: {{ .Values.auth.webTokenKey }}
{{- end }}
{{- range .Values.apiKeys.env }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- with .Values.master.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The scenario's checksum (a new scenario rolls the interactive master; Jobs are
immutable anyway) and podAnnotations. */}}
{{- define "barrage.master.podAnnotations" -}}
{{- if not .Values.scenario.existingConfigMap }}
checksum/scenario: {{ include (print $.Template.BasePath "/scenario-configmap.yaml") . | sha256sum }}
{{- end }}
{{- with .Values.master.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The master's pod template (metadata and spec); restartPolicy comes from the caller. */}}
{{- define "barrage.master.podTemplate" -}}
{{- $component := dict "ctx" . "component" "master" }}
metadata:
  labels:
    {{- include "barrage.labels" $component | nindent 4 }}
    {{- with .Values.master.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $annotations := include "barrage.master.podAnnotations" . | trim }}
  {{- if $annotations }}
  annotations:
    {{- $annotations | nindent 4 }}
  {{- end }}
spec:
  {{- include "barrage.podCommon" . | nindent 2 }}
  terminationGracePeriodSeconds: {{ int .Values.master.terminationGracePeriodSeconds }}
  containers:
    - name: master
      image: {{ include "barrage.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "barrage.master.args" . | nindent 8 }}
      {{- $env := include "barrage.master.env" . | trim }}
      {{- if $env }}
      env:
        {{- $env | nindent 8 }}
      {{- end }}
      {{- with .Values.apiKeys.existingSecrets }}
      envFrom:
        {{- range . }}
        - secretRef:
            name: {{ . }}
        {{- end }}
      {{- end }}
      ports:
        - name: workers
          containerPort: {{ int .Values.master.port }}
          protocol: TCP
        {{- if .Values.web.enabled }}
        - name: web
          containerPort: {{ int .Values.web.port }}
          protocol: TCP
        {{- end }}
      # Ready once the worker port accepts connections: the Service then routes the
      # workers (which retry until it does) to it.
      readinessProbe:
        tcpSocket:
          port: workers
        periodSeconds: 2
        failureThreshold: 3
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.master.resources | nindent 8 }}
      volumeMounts:
        - name: scenario
          mountPath: /scenario
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if .Values.results.enabled }}
        - name: results
          mountPath: /results
        {{- end }}
  volumes:
    - name: scenario
      configMap:
        name: {{ include "barrage.scenarioConfigMap" . }}
        items:
          - key: {{ .Values.scenario.fileName }}
            path: {{ .Values.scenario.fileName }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if .Values.results.enabled }}
    - name: results
      {{- if eq .Values.results.volume.type "emptyDir" }}
      emptyDir: {}
      {{- else }}
      persistentVolumeClaim:
        claimName: {{ eq .Values.results.volume.type "existingClaim" | ternary .Values.results.volume.existingClaim (printf "%s-results" (include "barrage.fullname" .)) }}
      {{- end }}
    {{- end }}
  {{- with .Values.master.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.master.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.master.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
