{{/* Chart name, shortened to the 63 characters a label value allows. */}}
{{- define "biomarker-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: <release>-<chart>, or the release name when it already holds the chart name. */}}
{{- define "biomarker-worker.fullname" -}}
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

{{- define "biomarker-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name and instance only (selectors are immutable). */}}
{{- define "biomarker-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "biomarker-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The worker pods' selector: the selector labels plus the fixed component, so the backfill Job's pods never match. */}}
{{- define "biomarker-worker.workerSelectorLabels" -}}
{{ include "biomarker-worker.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{/* Labels of every resource. */}}
{{- define "biomarker-worker.labels" -}}
helm.sh/chart: {{ include "biomarker-worker.chart" . }}
{{ include "biomarker-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: biomarker-worker
{{- end }}

{{- define "biomarker-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "biomarker-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Names of the generated objects. */}}
{{- define "biomarker-worker.configName" -}}
{{- printf "%s-config" (include "biomarker-worker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "biomarker-worker.headlessName" -}}
{{- printf "%s-headless" (include "biomarker-worker.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}
{{- define "biomarker-worker.metricsName" -}}
{{- printf "%s-metrics" (include "biomarker-worker.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}
{{- define "biomarker-worker.mappingsName" -}}
{{- printf "%s-mappings" (include "biomarker-worker.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}
{{- define "biomarker-worker.credentialsSecretName" -}}
{{- default (printf "%s-kafka" (include "biomarker-worker.fullname" . | trunc 57 | trimSuffix "-")) .Values.kafka.credentials.existingSecret }}
{{- end }}

{{/* Where the mappings ConfigMap is mounted (read-only), and the path of one mapping by name. */}}
{{- define "biomarker-worker.mappingsDir" -}}
/etc/biomarker/mappings
{{- end }}
{{- define "biomarker-worker.mappingPath" -}}
{{- printf "%s/%s.yaml" (include "biomarker-worker.mappingsDir" .) . }}
{{- end }}

{{/* The files of the mappings ConfigMap as YAML (<name>.yaml: text); empty without mappings. */}}
{{- define "biomarker-worker.mappingFiles" -}}
{{- $files := dict }}
{{- range $name, $content := .Values.mappings }}
{{- $_ := set $files (printf "%s.yaml" $name) (ternary $content (toYaml $content) (kindIs "string" $content)) }}
{{- end }}
{{- if $files }}
{{- toYaml $files }}
{{- end }}
{{- end }}

{{/*
The worker's input topics as JSON {"inputs": [{"topic", "format", "mapping"}]} (mapping: the name
of a mappings entry, "" for none): kafka.inputs when set, else the single kafka.inputTopic.
Use: (include "biomarker-worker.inputs" . | fromJson).inputs
*/}}
{{- define "biomarker-worker.inputs" -}}
{{- $k := .Values.kafka }}
{{- $items := list }}
{{- if $k.inputs }}
{{- range $k.inputs }}
{{- $items = append $items (dict "topic" .topic "format" (.format | default "note") "mapping" (.mapping | default "")) }}
{{- end }}
{{- else }}
{{- $items = list (dict "topic" $k.inputTopic "format" ($k.inputFormat | default "note") "mapping" ($k.inputMapping | default "")) }}
{{- end }}
{{- dict "inputs" $items | toJson }}
{{- end }}

{{/* checksum/config: the ConfigMap's data and the mapping files; a change rolls the pods. */}}
{{- define "biomarker-worker.configChecksum" -}}
{{- $data := include "biomarker-worker.configData" . }}
{{- with include "biomarker-worker.mappingFiles" . }}
{{- $data = printf "%s\n---\n%s" $data . }}
{{- end }}
{{- $data | sha256sum }}
{{- end }}

{{- define "biomarker-worker.gpuEnabled" -}}
{{- if .Values.gpu.enabled }}true{{ end }}
{{- end }}

{{/* Container image: repository[:tag][@digest]; the tag defaults to <appVersion>-<flavor>. */}}
{{- define "biomarker-worker.image" -}}
{{- $flavor := .Values.image.flavor | default (ternary "cuda" "cpu" .Values.gpu.enabled) }}
{{- $tag := .Values.image.tag | default (printf "%s-%s" .Chart.AppVersion $flavor) }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Device: explicit value, else cuda with GPUs and cpu without. */}}
{{- define "biomarker-worker.device" -}}
{{- .Values.model.device | default (ternary "cuda" "cpu" .Values.gpu.enabled) }}
{{- end }}

{{/* Torch threads: explicit value, else the whole CPUs of resources.requests.cpu (at least 1). */}}
{{- define "biomarker-worker.torchThreads" -}}
{{- if .Values.model.torchThreads }}
{{- .Values.model.torchThreads }}
{{- else }}
{{- $cpu := toString (dig "requests" "cpu" "1" .Values.resources) }}
{{- $n := 1 }}
{{- if hasSuffix "m" $cpu }}
{{- $n = div (trimSuffix "m" $cpu | atoi) 1000 }}
{{- else }}
{{- $n = $cpu | float64 | floor | int }}
{{- end }}
{{- max 1 $n }}
{{- end }}
{{- end }}

{{/* The termination grace period: derived from the drain deadline, or the checked explicit value. */}}
{{- define "biomarker-worker.terminationGracePeriodSeconds" -}}
{{- $drain := .Values.shutdown.drainTimeoutSeconds | float64 }}
{{- if kindIs "invalid" .Values.shutdown.terminationGracePeriodSeconds }}
{{- add (ceil $drain | int) .Values.shutdown.gracePeriodMarginSeconds }}
{{- else }}
{{- $grace := .Values.shutdown.terminationGracePeriodSeconds | int }}
{{- if le ($grace | float64) $drain }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must exceed shutdown.drainTimeoutSeconds (%v): the worker needs time to drain, flush, commit and leave the group after SIGTERM" $grace .Values.shutdown.drainTimeoutSeconds) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/* True when the cluster (or --api-versions) serves the KEDA ScaledObject API and KEDA is enabled. */}}
{{- define "biomarker-worker.kedaActive" -}}
{{- if and .Values.autoscaling.keda.enabled (.Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject") }}true{{ end }}
{{- end }}

{{- define "biomarker-worker.hpaActive" -}}
{{- if and .Values.autoscaling.hpa.enabled (not (include "biomarker-worker.kedaActive" .)) }}true{{ end }}
{{- end }}

{{- define "biomarker-worker.serviceMonitorActive" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}true{{ end }}
{{- end }}

{{- define "biomarker-worker.saslEnabled" -}}
{{- if hasPrefix "SASL" .Values.kafka.security.protocol }}true{{ end }}
{{- end }}

{{- define "biomarker-worker.tlsEnabled" -}}
{{- if has .Values.kafka.security.protocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/* True when the chart must create the credentials Secret. */}}
{{- define "biomarker-worker.createCredentialsSecret" -}}
{{- $c := .Values.kafka.credentials }}
{{- if and (not $c.existingSecret) (or $c.username $c.password $c.oauthbearerConfig $c.sslKeyPassword) }}true{{ end }}
{{- end }}

{{/* Render-time checks of value combinations the schema cannot express. */}}
{{- define "biomarker-worker.validate" -}}
{{- if and (eq .Values.runtime "faust") (eq .Values.kafka.processingGuarantee "exactly-once") }}
{{- fail "runtime=faust supports at-least-once only: set kafka.processingGuarantee=at-least-once or runtime=confluent (docs/FAUST.md)" }}
{{- end }}
{{- $sec := .Values.kafka.security }}
{{- $c := .Values.kafka.credentials }}
{{- if include "biomarker-worker.saslEnabled" . }}
{{- if not $sec.saslMechanism }}
{{- fail (printf "kafka.security.saslMechanism is required with kafka.security.protocol=%s" $sec.protocol) }}
{{- end }}
{{- if not (or $c.existingSecret $c.username $c.password $c.oauthbearerConfig) }}
{{- fail "SASL needs credentials: set kafka.credentials.existingSecret (preferred) or the kafka.credentials values" }}
{{- end }}
{{- if not $c.existingSecret }}
{{- if and (eq $sec.saslMechanism "OAUTHBEARER") (not $c.oauthbearerConfig) }}
{{- fail "kafka.credentials.oauthbearerConfig is required for OAUTHBEARER without kafka.credentials.existingSecret" }}
{{- end }}
{{- if and (ne $sec.saslMechanism "OAUTHBEARER") (not (and $c.username $c.password)) }}
{{- fail (printf "kafka.credentials.username and .password are required for %s without kafka.credentials.existingSecret" $sec.saslMechanism) }}
{{- end }}
{{- end }}
{{- else if $sec.saslMechanism }}
{{- fail (printf "kafka.security.saslMechanism is set but kafka.security.protocol=%s has no SASL" $sec.protocol) }}
{{- end }}
{{- if and .Values.kafka.tls.existingSecret (not (include "biomarker-worker.tlsEnabled" .)) }}
{{- fail (printf "kafka.tls.existingSecret is set but kafka.security.protocol=%s has no TLS" $sec.protocol) }}
{{- end }}
{{- if ne (empty .Values.kafka.tls.certKey) (empty .Values.kafka.tls.keyKey) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together (mutual TLS)" }}
{{- end }}
{{- if and (or .Values.kafka.tls.certKey .Values.kafka.tls.keyKey) (not .Values.kafka.tls.existingSecret) }}
{{- fail "kafka.tls.certKey/keyKey need kafka.tls.existingSecret" }}
{{- end }}
{{- include "biomarker-worker.validateInputs" . }}
{{- if and .Values.autoscaling.keda.enabled (eq $sec.saslMechanism "OAUTHBEARER") (not .Values.autoscaling.keda.triggerAuthenticationName) }}
{{- fail "KEDA with OAUTHBEARER needs autoscaling.keda.triggerAuthenticationName (an existing TriggerAuthentication with KEDA's oauth parameters)" }}
{{- end }}
{{- if and .Values.autoscaling.keda.enabled (gt (int .Values.autoscaling.keda.minReplicaCount) (int .Values.autoscaling.keda.maxReplicaCount)) }}
{{- fail "autoscaling.keda.minReplicaCount must not exceed maxReplicaCount" }}
{{- end }}
{{- if and .Values.autoscaling.hpa.enabled (gt (int .Values.autoscaling.hpa.minReplicas) (int .Values.autoscaling.hpa.maxReplicas)) }}
{{- fail "autoscaling.hpa.minReplicas must not exceed maxReplicas" }}
{{- end }}
{{- if eq .Values.cache.dir .Values.cache.imageDir }}
{{- fail "cache.dir must differ from cache.imageDir: the emptyDir would hide the image's pre-materialised model" }}
{{- end }}
{{- if and .Values.gpu.enabled (eq .Values.image.flavor "cpu") }}
{{- fail "gpu.enabled needs the cuda image: unset image.flavor or set it to cuda" }}
{{- end }}
{{- $_ := include "biomarker-worker.terminationGracePeriodSeconds" . }}
{{- end }}

{{/* Checks of the input topics, their formats and mappings (kafka.inputTopic/inputFormat/inputMapping or kafka.inputs). */}}
{{- define "biomarker-worker.validateInputs" -}}
{{- $k := .Values.kafka }}
{{- $multi := not (empty $k.inputs) }}
{{- if $multi }}
{{- if ne ($k.inputFormat | default "note") "note" }}
{{- fail (printf "kafka.inputFormat=%s does not apply when kafka.inputs is set: give each item of kafka.inputs its format" $k.inputFormat) }}
{{- end }}
{{- if $k.inputMapping }}
{{- fail "kafka.inputMapping does not apply when kafka.inputs is set: give the item of kafka.inputs with format mapping its mapping" }}
{{- end }}
{{- end }}
{{- $known := keys (.Values.mappings | default dict) | sortAlpha }}
{{- $seen := dict }}
{{- range $i, $in := (include "biomarker-worker.inputs" . | fromJson).inputs }}
{{- /* Where the item is and how its fields are called, for the messages. */}}
{{- $at := printf "kafka.inputs[%d] (topic %q): " (int $i) $in.topic }}
{{- $fmt := printf "format %s" $in.format }}
{{- $map := "mapping" }}
{{- if not $multi }}
{{- $at = "" }}
{{- $fmt = printf "kafka.inputFormat=%s" $in.format }}
{{- $map = "kafka.inputMapping" }}
{{- end }}
{{- if has $in.topic (list $k.outputTopic $k.dlqTopic) }}
{{- if $multi }}
{{- fail (printf "%san input topic must differ from kafka.outputTopic and kafka.dlqTopic" $at) }}
{{- else }}
{{- fail "kafka.inputTopic must differ from kafka.outputTopic and kafka.dlqTopic" }}
{{- end }}
{{- end }}
{{- if hasKey $seen $in.topic }}
{{- fail (printf "%sthe topic is listed twice in kafka.inputs (first at kafka.inputs[%d]); one consumer group reads a topic once, in one format" $at (int (get $seen $in.topic))) }}
{{- end }}
{{- $_ := set $seen $in.topic $i }}
{{- if and (eq $in.format "mapping") (not $in.mapping) }}
{{- fail (printf "%s%s needs %s: the name of a mappings entry (known: %s)" $at $fmt $map (join ", " $known | default "none")) }}
{{- end }}
{{- if and $in.mapping (ne $in.format "mapping") }}
{{- fail (printf "%s%s %q is set with %s: a mapping is read only with format mapping" $at $map $in.mapping $fmt) }}
{{- end }}
{{- if and $in.mapping (not (has $in.mapping $known)) }}
{{- fail (printf "%s%s %q is not an entry of mappings (known: %s)" $at $map $in.mapping (join ", " $known | default "none")) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Non-secret settings (the ConfigMap's data); its hash rolls the pods when it changes. */}}
{{- define "biomarker-worker.configData" -}}
{{- $k := .Values.kafka }}
{{- $i := .Values.inference }}
BIOMARKER_BOOTSTRAP_SERVERS: {{ $k.bootstrapServers | quote }}
{{- if $k.inputs }}
{{- $inputs := list }}
{{- range (include "biomarker-worker.inputs" . | fromJson).inputs }}
{{- $item := dict "topic" .topic "format" .format }}
{{- with .mapping }}
{{- $_ := set $item "mapping" (include "biomarker-worker.mappingPath" .) }}
{{- end }}
{{- $inputs = append $inputs $item }}
{{- end }}
BIOMARKER_INPUTS: {{ toJson $inputs | quote }}
{{- else }}
BIOMARKER_INPUT_TOPIC: {{ $k.inputTopic | quote }}
BIOMARKER_INPUT_FORMAT: {{ $k.inputFormat | default "note" | quote }}
{{- with $k.inputMapping }}
BIOMARKER_INPUT_MAPPING: {{ include "biomarker-worker.mappingPath" . | quote }}
{{- end }}
{{- end }}
BIOMARKER_OUTPUT_TOPIC: {{ $k.outputTopic | quote }}
BIOMARKER_DLQ_TOPIC: {{ $k.dlqTopic | quote }}
BIOMARKER_GROUP_ID: {{ $k.groupId | quote }}
BIOMARKER_GROUP_PROTOCOL: {{ $k.groupProtocol | quote }}
BIOMARKER_PROCESSING_GUARANTEE: {{ $k.processingGuarantee | quote }}
BIOMARKER_AUTO_OFFSET_RESET: {{ $k.autoOffsetReset | quote }}
BIOMARKER_SESSION_TIMEOUT_MS: {{ $k.sessionTimeoutMs | int | quote }}
BIOMARKER_MAX_POLL_INTERVAL_MS: {{ $k.maxPollIntervalMs | int | quote }}
BIOMARKER_COMMIT_INTERVAL_MS: {{ $k.commitIntervalMs | int | quote }}
BIOMARKER_CLIENT_ID: {{ $k.clientId | default (include "biomarker-worker.fullname" .) | quote }}
BIOMARKER_SECURITY_PROTOCOL: {{ $k.security.protocol | quote }}
{{- with $k.security.saslMechanism }}
BIOMARKER_SASL_MECHANISM: {{ . | quote }}
{{- end }}
BIOMARKER_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM: {{ $k.security.endpointIdentification | quote }}
{{- if $k.tls.existingSecret }}
{{- with $k.tls.caKey }}
BIOMARKER_SSL_CA_LOCATION: {{ printf "%s/%s" $k.tls.mountPath . | quote }}
{{- end }}
{{- with $k.tls.certKey }}
BIOMARKER_SSL_CERTIFICATE_LOCATION: {{ printf "%s/%s" $k.tls.mountPath . | quote }}
{{- end }}
{{- with $k.tls.keyKey }}
BIOMARKER_SSL_KEY_LOCATION: {{ printf "%s/%s" $k.tls.mountPath . | quote }}
{{- end }}
{{- end }}
{{- with $k.extra }}
BIOMARKER_KAFKA_EXTRA: {{ toJson . | quote }}
{{- end }}
{{- if or .Values.model.path .Values.model.volume }}
BIOMARKER_MODEL_PATH: {{ .Values.model.path | default .Values.model.mountPath | quote }}
{{- end }}
BIOMARKER_BACKEND: {{ .Values.model.backend | quote }}
BIOMARKER_DEVICE: {{ include "biomarker-worker.device" . | quote }}
BIOMARKER_DTYPE: {{ .Values.model.dtype | quote }}
BIOMARKER_THRESHOLD: {{ .Values.model.threshold | toString | quote }}
BIOMARKER_TORCH_THREADS: {{ include "biomarker-worker.torchThreads" . | quote }}
BIOMARKER_MAX_SENTENCE_TOKENS: {{ $i.maxSentenceTokens | int | quote }}
{{- if not (kindIs "invalid" $i.tokenBudget) }}
BIOMARKER_TOKEN_BUDGET: {{ $i.tokenBudget | int | quote }}
{{- end }}
{{- if not (kindIs "invalid" $i.maxBatchSentences) }}
BIOMARKER_MAX_BATCH_SENTENCES: {{ $i.maxBatchSentences | int | quote }}
{{- end }}
BIOMARKER_MAX_WAIT_MS: {{ $i.maxWaitMs | toString | quote }}
BIOMARKER_PACK_SENTENCES: {{ $i.packSentences | toString | quote }}
BIOMARKER_INCLUDE_SENTENCE_TEXT: {{ $i.includeSentenceText | toString | quote }}
BIOMARKER_INCLUDE_NOTE_TEXT: {{ $i.includeNoteText | toString | quote }}
BIOMARKER_MAX_NOTE_CHARS: {{ $i.maxNoteChars | int | quote }}
BIOMARKER_MAX_INFLIGHT_NOTES: {{ $i.maxInflightNotes | int | quote }}
BIOMARKER_MAX_INFLIGHT_BYTES: {{ $i.maxInflightBytes | int64 | quote }}
BIOMARKER_MAX_INFLIGHT_SENTENCES: {{ $i.maxInflightSentences | int | quote }}
{{- if not (kindIs "invalid" $i.maxNoteSentences) }}
BIOMARKER_MAX_NOTE_SENTENCES: {{ $i.maxNoteSentences | int | quote }}
{{- end }}
{{- if not (kindIs "invalid" $i.maxOutputBytes) }}
BIOMARKER_MAX_OUTPUT_BYTES: {{ $i.maxOutputBytes | int64 | quote }}
{{- end }}
BIOMARKER_POISON_AFTER_CRASHES: {{ $i.poisonAfterCrashes | int | quote }}
BIOMARKER_CONSUME_BATCH_SIZE: {{ $i.consumeBatchSize | int | quote }}
BIOMARKER_DRAIN_TIMEOUT_S: {{ .Values.shutdown.drainTimeoutSeconds | toString | quote }}
BIOMARKER_REVOKE_TIMEOUT_S: {{ .Values.shutdown.revokeTimeoutSeconds | toString | quote }}
BIOMARKER_LOG_LEVEL: {{ .Values.logLevel | quote }}
BIOMARKER_RUNTIME: {{ .Values.runtime | quote }}
BIOMARKER_METRICS_PORT: {{ .Values.metrics.port | int | quote }}
BIOMARKER_METRICS_HOST: {{ .Values.metrics.host | quote }}
BIOMARKER_LIVENESS_TIMEOUT_S: {{ .Values.livenessTimeoutSeconds | toString | quote }}
BIOMARKER_CACHE_DIR: {{ .Values.cache.dir | quote }}
HF_HOME: {{ printf "%s/huggingface" .Values.cache.dir | quote }}
{{- end }}

{{/* Worker resources plus the GPUs of gpu.enabled (requests = limits for extended resources). */}}
{{- define "biomarker-worker.resources" -}}
{{- $res := deepCopy (.resources | default dict) }}
{{- $gpu := .root.Values.gpu }}
{{- if and $gpu.enabled .withGpu }}
{{- $limits := dig "limits" dict $res }}
{{- $requests := dig "requests" dict $res }}
{{- $_ := set $limits $gpu.resourceName ($gpu.count | int) }}
{{- $_ = set $requests $gpu.resourceName ($gpu.count | int) }}
{{- $_ = set $res "limits" $limits }}
{{- $_ = set $res "requests" $requests }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* Environment from Secrets and the downward API; the rest comes from the ConfigMap. */}}
{{- define "biomarker-worker.secretEnv" -}}
{{- $c := .Values.kafka.credentials }}
{{- $secret := include "biomarker-worker.credentialsSecretName" . }}
{{- if include "biomarker-worker.saslEnabled" . }}
{{- if eq .Values.kafka.security.saslMechanism "OAUTHBEARER" }}
- name: BIOMARKER_SASL_OAUTHBEARER_CONFIG
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $c.keys.oauthbearerConfig }}
{{- else }}
- name: BIOMARKER_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $c.keys.username }}
- name: BIOMARKER_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $c.keys.password }}
{{- end }}
{{- end }}
{{- if and .Values.kafka.tls.keyKey (or $c.existingSecret $c.sslKeyPassword) }}
- name: BIOMARKER_SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $c.keys.sslKeyPassword }}
      optional: true
{{- end }}
{{- end }}

{{/*
Pod template shared by the Deployment, the StatefulSet and the backfill Job.
Parameters (a dict): root (the chart context), component ("worker" or "backfill"), args (the
container arguments), resources, probes (bool), staticMembership (bool), restartPolicy (optional),
env (optional: EnvVars of this container that override the ConfigMap's, e.g. the backfill's input).
*/}}
{{- define "biomarker-worker.podTemplate" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
metadata:
  labels:
    {{- include "biomarker-worker.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "biomarker-worker.configChecksum" $root }}
    {{- /* No checksum of the credentials: an unsalted hash of a password in the pod spec invites guessing. */}}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "biomarker-worker.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
  enableServiceLinks: false
  {{- with .restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ include "biomarker-worker.terminationGracePeriodSeconds" $root }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if and $v.gpu.enabled $v.gpu.runtimeClassName }}
  runtimeClassName: {{ $v.gpu.runtimeClassName }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- if $v.cache.seedFromImage }}
  initContainers:
    - name: seed-cache
      image: {{ include "biomarker-worker.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command:
        - python
        - -c
        - import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True)
        - {{ $v.cache.imageDir | quote }}
        - {{ $v.cache.dir | quote }}
      resources:
        {{- include "biomarker-worker.resources" (dict "root" $root "resources" .resources "withGpu" false) | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: cache
          mountPath: {{ $v.cache.dir }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "biomarker-worker.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        {{- toYaml .args | nindent 8 }}
      ports:
        - name: metrics
          containerPort: {{ $v.metrics.port }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "biomarker-worker.configName" $root }}
        {{- with $v.extraEnvFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- $env := include "biomarker-worker.secretEnv" $root }}
      {{- if or $env .staticMembership .env $v.extraEnv }}
      env:
        {{- with $env }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- if .staticMembership }}
        - name: BIOMARKER_GROUP_INSTANCE_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- with .env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      resources:
        {{- include "biomarker-worker.resources" (dict "root" $root "resources" .resources "withGpu" true) | nindent 8 }}
      {{- if .probes }}
      {{- with $v.probes.startup }}
      {{- if .enabled }}
      startupProbe:
        httpGet:
          path: /livez
          port: metrics
        periodSeconds: {{ .periodSeconds }}
        timeoutSeconds: {{ .timeoutSeconds }}
        failureThreshold: {{ .failureThreshold }}
      {{- end }}
      {{- end }}
      {{- with $v.probes.liveness }}
      {{- if .enabled }}
      livenessProbe:
        httpGet:
          path: /livez
          port: metrics
        periodSeconds: {{ .periodSeconds }}
        timeoutSeconds: {{ .timeoutSeconds }}
        failureThreshold: {{ .failureThreshold }}
      {{- end }}
      {{- end }}
      {{- with $v.probes.readiness }}
      {{- if .enabled }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        periodSeconds: {{ .periodSeconds }}
        timeoutSeconds: {{ .timeoutSeconds }}
        failureThreshold: {{ .failureThreshold }}
      {{- end }}
      {{- end }}
      {{- end }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: cache
          mountPath: {{ $v.cache.dir }}
        - name: tmp
          mountPath: /tmp
        {{- if $v.model.volume }}
        - name: model
          mountPath: {{ $v.model.mountPath }}
          readOnly: true
        {{- end }}
        {{- if $v.kafka.tls.existingSecret }}
        - name: kafka-tls
          mountPath: {{ $v.kafka.tls.mountPath }}
          readOnly: true
        {{- end }}
        {{- if $v.mappings }}
        - name: mappings
          mountPath: {{ include "biomarker-worker.mappingsDir" $root }}
          readOnly: true
        {{- end }}
        {{- with $v.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: cache
      emptyDir:
        sizeLimit: {{ $v.cache.sizeLimit }}
    - name: tmp
      emptyDir:
        sizeLimit: {{ $v.tmp.sizeLimit }}
    {{- with $v.model.volume }}
    - name: model
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if $v.kafka.tls.existingSecret }}
    - name: kafka-tls
      secret:
        secretName: {{ $v.kafka.tls.existingSecret }}
        defaultMode: 288  # 0440: owner and group (fsGroup) read
    {{- end }}
    {{- if $v.mappings }}
    - name: mappings
      configMap:
        name: {{ include "biomarker-worker.mappingsName" $root }}
        defaultMode: 292  # 0444: read-only
    {{- end }}
    {{- with $v.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $tolerations := $v.tolerations }}
  {{- if and $v.gpu.enabled $v.gpu.tolerateGpuTaint }}
  {{- $tolerations = append $tolerations (dict "key" $v.gpu.resourceName "operator" "Exists" "effect" "NoSchedule") }}
  {{- end }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
