{{/*
The chart name, cut to 63 characters (the limit of a label value).
*/}}
{{- define "model-monitor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: the release name, plus the chart name unless the release name holds it already; 63 characters at most.
*/}}
{{- define "model-monitor.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "model-monitor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "model-monitor.labels" -}}
helm.sh/chart: {{ include "model-monitor.chart" . }}
{{ include "model-monitor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that identify the chart's pods.
*/}}
{{- define "model-monitor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "model-monitor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The monitor's image; the tag defaults to the chart's appVersion.
*/}}
{{- define "model-monitor.image" -}}
{{- $image := .Values.cronJob.image -}}
{{- if has $image.repository .Values.cronJob.legacyImages -}}
{{- /* A 1.x values file that copied the curl default still gets the monitor. */ -}}
{{- printf "%s:%s" .Values.cronJob.defaultImage .Chart.AppVersion }}
{{- else -}}
{{- printf "%s:%s" $image.repository ($image.tag | default .Chart.AppVersion | toString) }}
{{- with $image.digest }}@{{ . }}{{ end }}
{{- end }}
{{- end }}

{{/*
Where the ConfigMap is mounted, and the endpoints file in it (MODEL_MONITOR_ENDPOINTS).
*/}}
{{- define "model-monitor.configDir" -}}
/etc/model-monitor
{{- end }}

{{/*
The endpoints file: the `endpoints` and `defaults` values, as the monitor reads them. No secrets: keys come as env.
*/}}
{{- define "model-monitor.endpointsFile" -}}
{{- $file := dict "endpoints" .Values.endpoints }}
{{- with .Values.defaults }}
{{- $_ := set $file "defaults" . }}
{{- end }}
{{- toYaml $file }}
{{- end }}

{{/*
A DNS-1123 label fragment from any text: lower case, runs of other characters become "-".
*/}}
{{- define "model-monitor.sanitize" -}}
{{- regexReplaceAll "[^a-z0-9]+" (lower .) "-" | trimAll "-" }}
{{- end }}

{{/*
The name of one CronJob, 52 characters at most (Kubernetes adds 11 to name its Jobs).
Argument: dict "root" $ "only" ONLY, where ONLY is "" (mode all), an endpoint name or <endpoint>/<model id>.
A split CronJob's name is <fullname, cut to 25>-<ONLY sanitized, cut to fit>-<6-character hash of ONLY>: the hash
keeps apart two names that sanitize alike.
*/}}
{{- define "model-monitor.cronJobName" -}}
{{- $fullname := include "model-monitor.fullname" .root }}
{{- if .only }}
{{- $prefix := $fullname | trunc 25 | trimSuffix "-" }}
{{- $part := include "model-monitor.sanitize" .only | trunc (int (sub 44 (len $prefix))) | trimSuffix "-" }}
{{- printf "%s-%s-%s" $prefix $part (sha256sum .only | trunc 6) }}
{{- else }}
{{- $fullname | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The CronJobs to render, as a YAML list of {only, schedule}: one for every case (mode all), one per endpoint, or one
per enabled model. A split CronJob passes --only <endpoint> or --only <endpoint>/<model id> and uses the endpoint's
or model's `schedule`, else cronJob.schedule.
*/}}
{{- define "model-monitor.jobs" -}}
{{- $mode := .Values.cronJob.mode }}
{{- $schedule := .Values.cronJob.schedule }}
{{- $jobs := list }}
{{- if eq $mode "all" }}
{{- $jobs = append $jobs (dict "only" "" "schedule" $schedule) }}
{{- else if eq $mode "per-endpoint" }}
{{- range .Values.endpoints }}
{{- $jobs = append $jobs (dict "only" .name "schedule" (.schedule | default $schedule)) }}
{{- end }}
{{- else if eq $mode "per-model" }}
{{- range $endpoint := .Values.endpoints }}
{{- range .models }}
{{- if dig "enabled" true . }}
{{- $only := printf "%s/%s" $endpoint.name (.id | default .name) }}
{{- $jobs = append $jobs (dict "only" $only "schedule" (.schedule | default $endpoint.schedule | default $schedule)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $jobs }}
{{- end }}

{{/*
The monitor's run deadline in seconds: cronJob.activeDeadlineSeconds minus cronJob.runDeadlineMarginSeconds, which
leaves the pod's start and the monitor's stop grace before Kubernetes stops the Job (README: "Deadlines and stopping").
*/}}
{{- define "model-monitor.runDeadline" -}}
{{- $deadline := sub .activeDeadlineSeconds .runDeadlineMarginSeconds }}
{{- if le $deadline 0 }}{{ fail "cronJob.runDeadlineMarginSeconds must be smaller than cronJob.activeDeadlineSeconds" }}{{ end }}
{{- $deadline }}
{{- end }}

{{/*
The container's environment. Argument: dict "root" $ "schedule" SCHEDULE "only" ONLY "failOn" POLICY "push" PUSH
"shards" SHARDS (absent: 1). PUSH false leaves the Pushgateway out (the helm test pod: a group of its own would
outlive it, and ModelMonitorNoRun would fire for it forever).
Kubernetes expands $(VAR) only from variables listed before it, and the Job controller appends its own
JOB_COMPLETION_INDEX after ours: so we list it first ourselves, from the pod's index annotation.
*/}}
{{- define "model-monitor.env" -}}
{{- $telemetry := .root.Values.telemetry -}}
{{- $cronJob := .root.Values.cronJob -}}
- name: MODEL_MONITOR_ENDPOINTS
  value: {{ printf "%s/endpoints.yaml" (include "model-monitor.configDir" .root) | quote }}
- name: CRONITOR_SCHEDULE
  value: {{ .schedule | quote }}
{{- if not (kindIs "invalid" $cronJob.activeDeadlineSeconds) }}
- name: MODEL_MONITOR_RUN_DEADLINE
  value: {{ include "model-monitor.runDeadline" $cronJob | quote }}
{{- end }}
- name: MODEL_MONITOR_STOP_GRACE
  value: {{ $cronJob.stopGraceSeconds | quote }}
- name: MODEL_MONITOR_FAIL_ON
  value: {{ .failOn | quote }}
{{- $shards := int (.shards | default 1) }}
{{- if gt $shards 1 }}
- name: JOB_COMPLETION_INDEX
  valueFrom:
    fieldRef:
      fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
- name: MODEL_MONITOR_SHARD
  value: {{ printf "$(JOB_COMPLETION_INDEX)/%d" $shards | quote }}
{{- end }}
{{- if $telemetry.url.value }}
- name: CRONITOR_URL
  value: {{ $telemetry.url.value | quote }}
{{- else if $telemetry.url.valueFrom }}
- name: CRONITOR_URL
  valueFrom:
    {{- toYaml $telemetry.url.valueFrom | nindent 4 }}
{{- end }}
{{- with $telemetry.env }}
- name: CRONITOR_ENV
  value: {{ . | quote }}
{{- end }}
{{- with $telemetry.apiKey.valueFrom }}
- name: CRONITOR_API_KEY
  valueFrom:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- if $telemetry.healthchecksUrl.value }}
- name: HEALTHCHECKS_URL
  value: {{ $telemetry.healthchecksUrl.value | quote }}
{{- else if $telemetry.healthchecksUrl.valueFrom }}
- name: HEALTHCHECKS_URL
  valueFrom:
    {{- toYaml $telemetry.healthchecksUrl.valueFrom | nindent 4 }}
{{- end }}
{{- $pushgateway := ternary .root.Values.metrics.pushgatewayUrl dict .push }}
{{- if $pushgateway.value }}
- name: MODEL_MONITOR_PUSHGATEWAY_URL
  value: {{ $pushgateway.value | quote }}
{{- else if $pushgateway.valueFrom }}
- name: MODEL_MONITOR_PUSHGATEWAY_URL
  valueFrom:
    {{- toYaml $pushgateway.valueFrom | nindent 4 }}
{{- end }}
{{- if or $pushgateway.value $pushgateway.valueFrom }}
{{- /* The Pushgateway group of this CronJob: a push replaces its group, so split CronJobs and shards need their own. */}}
{{- $instance := ternary (printf "%s/%s" .root.Release.Name .only) .root.Release.Name (ne .only "") }}
- name: MODEL_MONITOR_METRICS_INSTANCE
  value: {{ ternary (printf "%s/shard-$(JOB_COMPLETION_INDEX)" $instance) $instance (gt $shards 1) | quote }}
{{- end }}
{{- range .root.Values.apiKeys }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      {{- toYaml .secretKeyRef | nindent 6 }}
{{- end }}
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod template that runs the monitor once: the CronJob's jobTemplate and the helm test pod share it.
Argument: dict "root" $ "only" ONLY "schedule" SCHEDULE "restartPolicy" POLICY "failOn" POLICY "push" PUSH
["shards" SHARDS].
*/}}
{{- define "model-monitor.podTemplate" -}}
{{- $root := .root }}
{{- $values := $root.Values -}}
metadata:
  labels:
    {{- include "model-monitor.selectorLabels" $root | nindent 4 }}
    {{- with $values.commonLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "model-monitor.endpointsFile" $root | sha256sum }}
    {{- with $values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  restartPolicy: {{ .restartPolicy }}
  terminationGracePeriodSeconds: {{ $values.cronJob.terminationGracePeriodSeconds }}
  automountServiceAccountToken: false
  {{- with $values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: monitor
      image: {{ include "model-monitor.image" $root | quote }}
      imagePullPolicy: {{ $values.cronJob.image.pullPolicy }}
      {{- $args := list }}
      {{- if .only }}
      {{- $args = list "--only" .only }}
      {{- end }}
      {{- with concat $args $values.cronJob.extraArgs }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        {{- include "model-monitor.env" (dict "root" $root "schedule" .schedule "only" .only "failOn" .failOn "push" .push "shards" .shards) | nindent 8 }}
      {{- with $values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.cronJob.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: endpoints
          mountPath: {{ include "model-monitor.configDir" $root }}
          readOnly: true
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: endpoints
      configMap:
        name: {{ include "model-monitor.fullname" $root }}
    - name: tmp
      emptyDir: {{ with $values.tmpSizeLimit }}{{ dict "sizeLimit" . | toJson }}{{ else }}{}{{ end }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
