{{/* Names, labels and derived values shared by every template. */}}

{{- define "lockstep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: cluster-scoped objects carry it, so two releases never collide. */}}
{{- define "lockstep.fullname" -}}
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

{{- define "lockstep.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lockstep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lockstep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lockstep.labels" -}}
helm.sh/chart: {{ include "lockstep.chart" . }}
{{ include "lockstep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lockstep
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "lockstep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lockstep.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lockstep.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "lockstep.runnerImage" -}}
{{- default (include "lockstep.image" .) .Values.runnerImage }}
{{- end }}

{{/* Objects the operator itself reads and writes by name: the chart and the flags agree. */}}
{{- define "lockstep.serviceName" -}}
{{- include "lockstep.fullname" . }}
{{- end }}

{{- define "lockstep.webhookConfigurationName" -}}
{{- printf "%s-gate" (include "lockstep.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lockstep.tlsSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "lockstep.fullname" .)) .Values.webhook.tlsSecretName }}
{{- end }}

{{- define "lockstep.leaseName" -}}
{{- printf "%s-leader" (include "lockstep.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lockstep.certificateName" -}}
{{- printf "%s-webhook" (include "lockstep.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Rules the operator needs in every namespace it watches (ClusterRole, or a Role in each). */}}
{{- define "lockstep.watchRules" -}}
# DatabaseMigrations: Kopf lists and watches them; the rollout-gate webhook (every replica)
# and the reconciler read one by name.
- apiGroups: ["lockstep.dev"]
  resources: ["databasemigrations"]
  verbs: ["get", "list", "watch"]
# Conditions, runs and history are written to the status subresource only (merge patch).
- apiGroups: ["lockstep.dev"]
  resources: ["databasemigrations/status"]
  verbs: ["patch"]
# Migration Jobs: watched (labelled ones), created once per run, deleted on timeout/retry;
# patch labels a run made before its shard's labels existed (and its pods) for the shard's watch.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "delete", "patch"]
# Job pods (lock sidecar state, exit results) and gated app pods are watched; patch removes the
# lockstep.dev/migration scheduling gate once the migration succeeded.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
# The log tail of a finished migration Job goes into status.lastRun.logTail.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# spec.database.urlSecretRef (and the other Secrets a spec names): the URL identifies the
# database (one Job per database at a time) and its version table. Watched so that a pass needs
# no GET and an edit re-plans at once; only the Secrets a DatabaseMigration names are kept in
# memory, and Helm release and service-account-token Secrets are filtered out by the API server.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: {{ if .Values.watchSecrets }}["get", "list", "watch"]{{ else }}["get"]{{ end }}
# spec.source.configMapRef: the migration files are hashed into the spec hash; watched (only the
# digests are kept) so that an edited file starts a new run at once.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
# Events on DatabaseMigrations (JobCreated, Succeeded, Failed, ReleasedPods, ...).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# when: AfterRollout waits until rollout.workloads have rolled out.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get"]
{{- end }}
