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

{{/* Labels of every resource: the chart's own, then commonLabels (never in a selector). */}}
{{- define "biomarker-worker.labels" -}}
helm.sh/chart: {{ include "biomarker-worker.chart" . }}
{{ include "biomarker-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "biomarker-worker.ownerLabels" . }}
{{- end }}

{{/*
Labels that do not change with the chart's version: the backfill Job's pod template carries only
these (with commonLabels), because a Job's template is immutable and a chart upgrade must not
have to replace a running replay.
*/}}
{{- define "biomarker-worker.stableLabels" -}}
{{ include "biomarker-worker.selectorLabels" . }}
{{ include "biomarker-worker.ownerLabels" . }}
{{- end }}

{{- define "biomarker-worker.ownerLabels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: biomarker-worker
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The label keys the chart sets itself; commonLabels, podLabels and the ServiceMonitor's labels may not set them. */}}
{{- define "biomarker-worker.ownLabelKeys" -}}
{{- list "helm.sh/chart" "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/version" "app.kubernetes.io/managed-by" "app.kubernetes.io/part-of" "app.kubernetes.io/component" | toJson }}
{{- end }}

{{/*
The live consumer group: kafka.groupId, else <namespace>.<fullname> (at most 63 + 1 + 63
characters), so same-named releases in two namespaces of one Kafka cluster never share a group.
*/}}
{{- define "biomarker-worker.groupId" -}}
{{- .Values.kafka.groupId | default (printf "%s.%s" .Release.Namespace (include "biomarker-worker.fullname" .)) | trunc 255 }}
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

{{/* The whole CPUs of resources.requests.cpu (at least 1). */}}
{{- define "biomarker-worker.requestedCpus" -}}
{{- $cpu := toString (dig "requests" "cpu" "1" .Values.resources) }}
{{- $n := 1 }}
{{- if hasSuffix "m" $cpu }}
{{- $n = div (trimSuffix "m" $cpu | atoi) 1000 }}
{{- else }}
{{- $n = $cpu | float64 | floor | int }}
{{- end }}
{{- max 1 $n }}
{{- end }}

{{/* Torch threads: explicit value, else the whole CPUs of resources.requests.cpu (at least 1). */}}
{{- define "biomarker-worker.torchThreads" -}}
{{- if .Values.model.torchThreads }}
{{- .Values.model.torchThreads }}
{{- else }}
{{- include "biomarker-worker.requestedCpus" . }}
{{- end }}
{{- end }}

{{/* Host processes: explicit value, else 1 on CPU or with the faust runtime, on a GPU the
requested CPUs less 2 (1 to 4). */}}
{{- define "biomarker-worker.hostProcesses" -}}
{{- if .Values.inference.hostProcesses }}
{{- .Values.inference.hostProcesses }}
{{- else if and .Values.gpu.enabled (ne .Values.runtime "faust") }}
{{- $n := include "biomarker-worker.requestedCpus" . | int }}
{{- max 1 (min 4 (sub $n 2)) }}
{{- else }}
{{- 1 }}
{{- end }}
{{- end }}

{{/*
The termination grace period. After SIGTERM the worker drains in-flight work (up to
shutdown.drainTimeoutSeconds), finishes the work of its revoked partitions as it leaves the group
(up to shutdown.revokeTimeoutSeconds), then flushes the producer, commits and closes (allowed
shutdown.closeAllowanceSeconds). Derived: the ceiling of those three plus
shutdown.gracePeriodMarginSeconds; an explicit value must exceed their sum.
*/}}
{{- define "biomarker-worker.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown }}
{{- $needed := addf ($s.drainTimeoutSeconds | float64) ($s.revokeTimeoutSeconds | float64) ($s.closeAllowanceSeconds | float64) }}
{{- if kindIs "invalid" $s.terminationGracePeriodSeconds }}
{{- add (ceil $needed | int) $s.gracePeriodMarginSeconds }}
{{- else }}
{{- $grace := $s.terminationGracePeriodSeconds | int }}
{{- if le ($grace | float64) $needed }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must exceed shutdown.drainTimeoutSeconds (%v) + shutdown.revokeTimeoutSeconds (%v) + shutdown.closeAllowanceSeconds (%v) = %v s: after SIGTERM the worker drains in-flight work, finishes its revoked partitions, then flushes the producer, commits and leaves the group; a SIGKILL before that makes the next owner of the partitions process the uncommitted work again" $grace $s.drainTimeoutSeconds $s.revokeTimeoutSeconds $s.closeAllowanceSeconds $needed) }}
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
{{- if eq .Values.runtime "faust" }}
{{- if eq .Values.kafka.processingGuarantee "exactly-once" }}
{{- fail "runtime=faust supports at-least-once only: set kafka.processingGuarantee=at-least-once or runtime=confluent (docs/FAUST.md)" }}
{{- end }}
{{- if gt (int (.Values.inference.hostProcesses | default 1)) 1 }}
{{- fail "runtime=faust prepares notes in its own process only: leave inference.hostProcesses unset (or 1), or use runtime=confluent (docs/FAUST.md)" }}
{{- end }}
{{- if ne .Values.kafka.groupProtocol "classic" }}
{{- fail "runtime=faust needs kafka.groupProtocol=classic: aiokafka has no KIP-848 consumer protocol (docs/FAUST.md)" }}
{{- end }}
{{- if .Values.kafka.extra }}
{{- fail "runtime=faust cannot apply kafka.extra (librdkafka properties): leave it empty, or use runtime=confluent (docs/FAUST.md)" }}
{{- end }}
{{- if eq .Values.kafka.security.saslMechanism "OAUTHBEARER" }}
{{- fail "runtime=faust does not support SASL OAUTHBEARER: use runtime=confluent (docs/FAUST.md)" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.kafka.processingGuarantee "exactly-once") (ne .Values.workload.kind "StatefulSet") }}
{{- fail "kafka.processingGuarantee=exactly-once needs workload.kind=StatefulSet: a Deployment's pods have no stable name, so each restart gets a new transactional id, cannot fence its predecessor, and an open transaction it left stalls read_committed readers of the outputs until the transaction times out" }}
{{- end }}
{{- $keda := .Values.autoscaling.keda }}
{{- if and $keda.enabled $keda.allowIdleConsumers $keda.limitToPartitionsWithLag }}
{{- fail "autoscaling.keda: allowIdleConsumers and limitToPartitionsWithLag cannot both be true (KEDA's kafka scaler refuses the pair)" }}
{{- end }}
{{- if and $keda.enabled (include "biomarker-worker.tlsEnabled" .) (eq .Values.kafka.security.endpointIdentification "none") }}
{{- fail "autoscaling.keda with kafka.security.endpointIdentification=none: KEDA's kafka scaler always verifies broker host names, so it could not read the lag; give the brokers certificates that name them, or scale with autoscaling.hpa" }}
{{- end }}
{{- if and (eq .Values.kafka.groupProtocol "classic") (lt (int .Values.kafka.maxPollIntervalMs) (int .Values.kafka.sessionTimeoutMs)) }}
{{- fail (printf "kafka.maxPollIntervalMs (%d) must be at least kafka.sessionTimeoutMs (%d) with groupProtocol classic: librdkafka refuses the pair and the worker would exit 2 at start" (int .Values.kafka.maxPollIntervalMs) (int .Values.kafka.sessionTimeoutMs)) }}
{{- end }}
{{- /* The words that mark a librdkafka property as a credential (worker/config/secrets.py). */}}
{{- range $key, $_ := .Values.kafka.extra }}
{{- range list "password" "passphrase" "secret" "token" "key" "credential" "oauthbearer.config" "jaas" }}
{{- if contains . (lower $key) }}
{{- fail (printf "kafka.extra.%s looks like a credential, and kafka.extra is rendered into a ConfigMap: leave kafka.extra empty and give the whole JSON object from a Secret (extraEnv: BIOMARKER_KAFKA_EXTRA with a secretKeyRef)" $key) }}
{{- end }}
{{- end }}
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
{{- if and .Values.kafka.tls.keyEncrypted (not .Values.kafka.tls.keyKey) }}
{{- fail "kafka.tls.keyEncrypted needs kafka.tls.keyKey: only a client key can be encrypted" }}
{{- end }}
{{- if and .Values.kafka.tls.keyEncrypted (not (or $c.existingSecret $c.sslKeyPassword)) }}
{{- fail (printf "kafka.tls.keyEncrypted needs the key's password: kafka.credentials.existingSecret with the key %s, or kafka.credentials.sslKeyPassword" $c.keys.sslKeyPassword) }}
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
{{- include "biomarker-worker.validatePartitions" . }}
{{- include "biomarker-worker.validateDisruptionBudget" . }}
{{- include "biomarker-worker.validateLabels" . }}
{{- if eq .Values.cache.dir .Values.cache.imageDir }}
{{- fail "cache.dir must differ from cache.imageDir: the emptyDir would hide the image's pre-materialised model" }}
{{- end }}
{{- if and .Values.gpu.enabled (eq .Values.image.flavor "cpu") }}
{{- fail "gpu.enabled needs the cuda image: unset image.flavor or set it to cuda" }}
{{- end }}
{{- $_ := include "biomarker-worker.terminationGracePeriodSeconds" . }}
{{- end }}

{{/*
Replicas against the input partitions (kafka.inputPartitions: the partition count of the input
topic, the total over kafka.inputs). A partition has one consumer of the group at a time, so a
member beyond the partition count is idle: ready, but it holds a pod and its resources for nothing
and every such member joining or leaving is a rebalance. Required with autoscaling, whose maximum must not exceed it.
*/}}
{{- define "biomarker-worker.validatePartitions" -}}
{{- $p := .Values.kafka.inputPartitions }}
{{- $keda := .Values.autoscaling.keda }}
{{- $hpa := .Values.autoscaling.hpa }}
{{- if kindIs "invalid" $p }}
{{- if or $keda.enabled $hpa.enabled }}
{{- fail "kafka.inputPartitions is required with autoscaling (autoscaling.keda.enabled or autoscaling.hpa.enabled): set it to the input topic's partition count (the total over kafka.inputs), so that the chart can check the autoscaler's maximum replicas against it" }}
{{- end }}
{{- else }}
{{- $p = int $p }}
{{- $hint := "a partition is consumed by one member of the group at a time, so the extra replicas would sit idle (ready, but holding pods and adding rebalances for nothing); lower the maximum or add partitions first and raise kafka.inputPartitions" }}
{{- if and $keda.enabled (not $keda.allowIdleConsumers) (gt (int $keda.maxReplicaCount) $p) }}
{{- fail (printf "autoscaling.keda.maxReplicaCount (%d) exceeds kafka.inputPartitions (%d): %s (autoscaling.keda.allowIdleConsumers=true keeps idle members on purpose)" (int $keda.maxReplicaCount) $p $hint) }}
{{- end }}
{{- if and $hpa.enabled (gt (int $hpa.maxReplicas) $p) }}
{{- fail (printf "autoscaling.hpa.maxReplicas (%d) exceeds kafka.inputPartitions (%d): %s" (int $hpa.maxReplicas) $p $hint) }}
{{- end }}
{{- if and (not (include "biomarker-worker.kedaActive" .)) (not (include "biomarker-worker.hpaActive" .)) (gt (int .Values.replicaCount) $p) }}
{{- fail (printf "replicaCount (%d) exceeds kafka.inputPartitions (%d): %s" (int .Values.replicaCount) $p $hint) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The PodDisruptionBudget must leave a node drain something to evict at the fewest replicas the
workload runs with (replicaCount, or the active autoscaler's minimum, at least 1): maxUnavailable
0, or a minAvailable that amounts to every pod, would block drains for good.
*/}}
{{- define "biomarker-worker.validateDisruptionBudget" -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if $pdb.enabled }}
{{- $low := int .Values.replicaCount }}
{{- if include "biomarker-worker.kedaActive" . }}
{{- $low = max 1 (int .Values.autoscaling.keda.minReplicaCount) | int }}
{{- else if include "biomarker-worker.hpaActive" . }}
{{- $low = max 1 (int .Values.autoscaling.hpa.minReplicas) | int }}
{{- end }}
{{- if kindIs "invalid" $pdb.minAvailable }}
{{- if has (toString $pdb.maxUnavailable) (list "0" "0%") }}
{{- fail "podDisruptionBudget.maxUnavailable must not be 0: no worker could ever be evicted and node drains would hang; keep the default 1" }}
{{- end }}
{{- else if gt $low 0 }}
{{- $min := toString $pdb.minAvailable }}
{{- $required := 0 }}
{{- if hasSuffix "%" $min }}
{{- $required = ceil (divf (mul (trimSuffix "%" $min | atoi) $low) 100) | int }}
{{- else }}
{{- $required = atoi $min }}
{{- end }}
{{- if ge $required $low }}
{{- fail (printf "podDisruptionBudget.minAvailable (%s) keeps all %d pod(s) the workload can run with available, so a node drain could never evict a worker: leave minAvailable null and use podDisruptionBudget.maxUnavailable (default 1)" $min $low) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* commonLabels, podLabels and the ServiceMonitor's labels must not override the chart's own labels (selectors depend on them). */}}
{{- define "biomarker-worker.validateLabels" -}}
{{- $own := include "biomarker-worker.ownLabelKeys" . | fromJsonArray }}
{{- range $value, $labels := dict "commonLabels" .Values.commonLabels "podLabels" .Values.podLabels "metrics.serviceMonitor.labels" .Values.metrics.serviceMonitor.labels }}
{{- range $key, $_ := $labels }}
{{- if has $key $own }}
{{- fail (printf "%s must not set %s: the chart sets it (and selects pods by it)" $value $key) }}
{{- end }}
{{- end }}
{{- end }}
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
BIOMARKER_GROUP_ID: {{ include "biomarker-worker.groupId" . | quote }}
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
{{- range (include "biomarker-worker.credentialFiles" . | fromJson).files }}
{{ .env }}: {{ printf "%s/%s" $k.credentials.mountPath .key | quote }}
{{- end }}
{{- with $k.extra }}
BIOMARKER_KAFKA_EXTRA: {{ toJson . | quote }}
{{- end }}
{{- if or .Values.model.path .Values.model.volume }}
BIOMARKER_MODEL_PATH: {{ .Values.model.path | default .Values.model.mountPath | quote }}
{{- end }}
{{- with .Values.model.sha256 }}
BIOMARKER_MODEL_SHA256: {{ . | quote }}
{{- end }}
BIOMARKER_BACKEND: {{ .Values.model.backend | quote }}
BIOMARKER_DEVICE: {{ include "biomarker-worker.device" . | quote }}
BIOMARKER_DTYPE: {{ .Values.model.dtype | quote }}
BIOMARKER_THRESHOLD: {{ .Values.model.threshold | toString | quote }}
BIOMARKER_LEXICON_RULES: {{ .Values.model.lexiconRules | toString | quote }}
BIOMARKER_TORCH_THREADS: {{ include "biomarker-worker.torchThreads" . | quote }}
BIOMARKER_HOST_PROCESSES: {{ include "biomarker-worker.hostProcesses" . | quote }}
BIOMARKER_MAX_SENTENCE_TOKENS: {{ $i.maxSentenceTokens | int | quote }}
{{- if not (kindIs "invalid" $i.tokenBudget) }}
BIOMARKER_TOKEN_BUDGET: {{ $i.tokenBudget | int | quote }}
{{- end }}
{{- if not (kindIs "invalid" $i.maxBatchSentences) }}
BIOMARKER_MAX_BATCH_SENTENCES: {{ $i.maxBatchSentences | int | quote }}
{{- end }}
BIOMARKER_MAX_WAIT_MS: {{ $i.maxWaitMs | toString | quote }}
BIOMARKER_SCORE_CACHE_SIZE: {{ $i.scoreCacheSize | int | quote }}
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

{{/* True when the worker needs the password of an encrypted TLS client key (from the credentials Secret). */}}
{{- define "biomarker-worker.sslKeyPasswordNeeded" -}}
{{- $c := .Values.kafka.credentials }}
{{- $tls := .Values.kafka.tls }}
{{- if and $tls.keyKey (or (and $c.existingSecret $tls.keyEncrypted) (and (not $c.existingSecret) $c.sslKeyPassword)) }}true{{ end }}
{{- end }}

{{/*
The credentials the worker reads from the mounted credentials Secret, as JSON
{"files": [{"env", "key"}]}: env is the BIOMARKER_<NAME>_FILE variable, key the Secret's key (and
the file's name under kafka.credentials.mountPath). Only the keys the settings need: SASL
username and password, or the OAUTHBEARER config, and the password of an encrypted client key.
Use: (include "biomarker-worker.credentialFiles" . | fromJson).files
*/}}
{{- define "biomarker-worker.credentialFiles" -}}
{{- $keys := .Values.kafka.credentials.keys }}
{{- $files := list }}
{{- if include "biomarker-worker.saslEnabled" . }}
{{- if eq .Values.kafka.security.saslMechanism "OAUTHBEARER" }}
{{- $files = append $files (dict "env" "BIOMARKER_SASL_OAUTHBEARER_CONFIG_FILE" "key" $keys.oauthbearerConfig) }}
{{- else }}
{{- $files = append $files (dict "env" "BIOMARKER_SASL_USERNAME_FILE" "key" $keys.username) }}
{{- $files = append $files (dict "env" "BIOMARKER_SASL_PASSWORD_FILE" "key" $keys.password) }}
{{- end }}
{{- end }}
{{- if include "biomarker-worker.sslKeyPasswordNeeded" . }}
{{- $files = append $files (dict "env" "BIOMARKER_SSL_KEY_PASSWORD_FILE" "key" $keys.sslKeyPassword) }}
{{- end }}
{{- dict "files" $files | toJson }}
{{- end }}

{{/*
Pod template shared by the Deployment, the StatefulSet and the backfill Job.
Parameters (a dict): root (the chart context), component ("worker" or "backfill"), args (the
container arguments), resources, probes (bool), staticMembership (bool), restartPolicy (optional),
env (optional: EnvVars of this container that override the ConfigMap's, e.g. the backfill's input),
stable (optional bool: the backfill Job's immutable template, without the config checksum and the
chart-version labels, so that a config change or a chart upgrade leaves a running Job as it is).
*/}}
{{- define "biomarker-worker.podTemplate" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $credentialFiles := (include "biomarker-worker.credentialFiles" $root | fromJson).files }}
{{- $labels := include (ternary "biomarker-worker.stableLabels" "biomarker-worker.labels" (default false .stable)) $root | fromYaml }}
{{- $_ := set $labels "app.kubernetes.io/component" .component }}
{{- $labels = merge (deepCopy ($v.podLabels | default dict)) $labels }}
metadata:
  labels:
    {{- toYaml $labels | nindent 4 }}
  {{- if or (not .stable) $v.podAnnotations }}
  annotations:
    {{- if not .stable }}
    checksum/config: {{ include "biomarker-worker.configChecksum" $root }}
    {{- end }}
    {{- /* No checksum of the credentials: an unsalted hash of a password in the pod spec invites guessing. */}}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
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
      {{- if or .staticMembership .env $v.extraEnv }}
      env:
        {{- if .staticMembership }}
        {{- /* Static membership: <namespace>.<pod name>, so same-named StatefulSets in two namespaces
        never share (and fence each other with) a group.instance.id. */}}
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: BIOMARKER_GROUP_INSTANCE_ID
          value: $(POD_NAMESPACE).$(POD_NAME)
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
        {{- if $credentialFiles }}
        - name: kafka-credentials
          mountPath: {{ $v.kafka.credentials.mountPath }}
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
    {{- if $credentialFiles }}
    # Only the keys the settings need (BIOMARKER_*_FILE); a missing key fails the pod's start.
    - name: kafka-credentials
      secret:
        secretName: {{ include "biomarker-worker.credentialsSecretName" $root }}
        defaultMode: 288  # 0440: owner and group (fsGroup) read
        items:
          {{- range $credentialFiles }}
          - key: {{ .key }}
            path: {{ .key }}
          {{- end }}
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
  {{- $tolerations = append $tolerations (dict "key" "nvidia.com/gpu" "operator" "Exists" "effect" "NoSchedule") }}
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
