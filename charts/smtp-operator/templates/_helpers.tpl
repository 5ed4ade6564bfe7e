{{/* Chart name, overridable. */}}
{{- define "smtp-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources. */}}
{{- define "smtp-operator.fullname" -}}
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

{{/* chart label value */}}
{{- define "smtp-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "smtp-operator.labels" -}}
helm.sh/chart: {{ include "smtp-operator.chart" . }}
{{ include "smtp-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels selecting the operator pods. */}}
{{- define "smtp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smtp-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Name of the ServiceAccount. */}}
{{- define "smtp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "smtp-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The port of metricsAddr (host:port or [v6]:port). */}}
{{- define "smtp-operator.metricsPort" -}}
{{- $port := regexFind "[0-9]+$" (toString .Values.metricsAddr) }}
{{- if not $port }}
{{- fail (printf "metricsAddr %q must end with :PORT" (toString .Values.metricsAddr)) }}
{{- end }}
{{- $port }}
{{- end }}

{{/* Namespace of the leader-election Lease. */}}
{{- define "smtp-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElectionNamespace }}
{{- end }}

{{/* A list value or a comma-separated string, rendered as a comma-separated string. */}}
{{- define "smtp-operator.csv" -}}
{{- if kindIs "slice" . }}{{ join "," . }}{{ else }}{{ toString . | nospace }}{{ end }}
{{- end }}

{{/* A list value or a comma-separated string, as a list of ports (ints). */}}
{{- define "smtp-operator.portList" -}}
{{- $l := list }}
{{- if kindIs "slice" . }}{{ $l = . }}{{ else }}{{ $l = splitList "," (toString . | nospace) }}{{ end }}
{{- range $l }}
- {{ int . }}
{{- end }}
{{- end }}

{{/* The RBAC rules of the operator (cluster-wide or in the watched namespace). */}}
{{- define "smtp-operator.rules" -}}
- apiGroups: ["smtp-operator.io"]
  resources: ["smtpsettings"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["smtp-operator.io"]
  resources: ["smtpsettings/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* ClusterSmtpSettings (cluster-wide install only; the namespaced install disables them): the objects and their
status. Their Secrets and ConfigMaps live in the cluster resource namespace, which the cluster-wide rules above
already cover; `namespaces` are read, and watched as metadata, for the labels `spec.allowedNamespaces` selects
on (a relay follows a label change at once). An SmtpRelay using a ClusterSmtpSettings gets a
ClusterRole/ClusterRoleBinding (that ClusterSmtpSettings and its own Namespace, by name) and a Role/RoleBinding
in the cluster resource namespace (the settings' Secrets/ConfigMaps, by name); no owner reference can cover
those, so the operator deletes them itself behind a finalizer on the SmtpRelay. */}}
{{- define "smtp-operator.clusterSettingsRules" -}}
- apiGroups: ["smtp-operator.io"]
  resources: ["clustersmtpsettings"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["smtp-operator.io"]
  resources: ["clustersmtpsettings/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles", "clusterrolebindings"]
  verbs: ["get", "create", "patch", "update", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["delete"]
- apiGroups: ["smtp-operator.io"]
  resources: ["smtprelays"]
  verbs: ["patch"]
{{- end }}

{{/* What the relay controller needs for SmtpRelays (docs/relay.md): their objects, by server-side apply.
The Role it creates for a relay grants only `get` on named Secrets/ConfigMaps, which the operator holds. */}}
{{- define "smtp-operator.relayRules" -}}
- apiGroups: ["smtp-operator.io"]
  resources: ["smtprelays"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["smtp-operator.io"]
  resources: ["smtprelays/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: [""]
  resources: ["services", "serviceaccounts"]
  verbs: ["get", "create", "patch", "update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch", "update"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "update", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "update", "delete"]
{{- end }}
