{{/*
The workers: their command line and pod template, shared by workers-job.yaml (mode
job) and workers-deployment.yaml (mode interactive).
*/}}

{{- define "barrage.workers.args" -}}
- worker
- --master
{{- /* The master Service's DNS name; a worker retries until the master is ready. */}}
- {{ printf "%s:%d" (include "barrage.masterName" .) (int .Values.master.port) | quote }}
{{- if and (eq .Values.mode "job") .Values.workers.giveUpAfter }}
- --give-up-after
- {{ .Values.workers.giveUpAfter | quote }}
{{- end }}
{{- with .Values.workers.weight }}
- --weight
- {{ int . | quote }}
{{- end }}
{{- with .Values.workers.threads }}
- --threads
- {{ int . | quote }}
{{- end }}
{{- range .Values.workers.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{- define "barrage.workers.env" -}}
{{- include "barrage.clusterTokenEnv" . }}
{{- with .Values.workers.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The workers' pod template (metadata and spec); restartPolicy comes from the caller. */}}
{{- define "barrage.workers.podTemplate" -}}
{{- $component := dict "ctx" . "component" "worker" }}
metadata:
  labels:
    {{- include "barrage.labels" $component | nindent 4 }}
    {{- with .Values.workers.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.workers.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- include "barrage.podCommon" . | nindent 2 }}
  # A worker on SIGTERM stops its users (5 s), sends its final report and leaves
  # within 10 s.
  terminationGracePeriodSeconds: {{ int .Values.workers.terminationGracePeriodSeconds }}
  containers:
    - name: worker
      image: {{ include "barrage.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "barrage.workers.args" . | nindent 8 }}
      {{- $env := include "barrage.workers.env" . | trim }}
      {{- if $env }}
      env:
        {{- $env | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.workers.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
  {{- with .Values.workers.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.workers.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.workers.affinity }}
  affinity:
    {{- toYaml .Values.workers.affinity | nindent 4 }}
  {{- else if ne .Values.workers.spreadAcrossNodes "none" }}
  affinity:
    {{- include "barrage.spread" (dict "ctx" . "component" "worker" "mode" .Values.workers.spreadAcrossNodes) | nindent 4 }}
  {{- end }}
{{- end }}
