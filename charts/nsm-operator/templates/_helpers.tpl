{{/*
Chart name, truncated to 63 characters (a label value).
*/}}
{{- define "nsm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: <release>-<chart>, or <release> when it already contains the
chart name.
*/}}
{{- define "nsm-operator.fullname" -}}
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
Chart label value: <name>-<version>.
*/}}
{{- define "nsm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels selecting the operator pod; never change on upgrade (Deployment selectors are immutable).
*/}}
{{- define "nsm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nsm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object: selector labels, chart/version bookkeeping and commonLabels.
*/}}
{{- define "nsm-operator.labels" -}}
helm.sh/chart: {{ include "nsm-operator.chart" . }}
{{ include "nsm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nsm-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "nsm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nsm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
registry/repository, or repository alone when the registry is empty.
Usage: include "nsm-operator.imageName" (list registry repository)
*/}}
{{- define "nsm-operator.imageName" -}}
{{- $registry := index . 0 | trimSuffix "/" }}
{{- if $registry }}
{{- printf "%s/%s" $registry (index . 1) }}
{{- else }}
{{- index . 1 }}
{{- end }}
{{- end }}

{{/*
Operator image reference: [registry/]repository:tag[@digest].
*/}}
{{- define "nsm-operator.image" -}}
{{- $name := include "nsm-operator.imageName" (list .Values.image.registry .Values.image.repository) }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" $name $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $name $tag }}
{{- end }}
{{- end }}

{{/*
Trainer image the operator puts on Jobs of NSMTrainings without spec.image; its registry
defaults to the operator's.
*/}}
{{- define "nsm-operator.trainerImage" -}}
{{- $registry := default .Values.image.registry .Values.operator.trainerImage.registry }}
{{- $name := include "nsm-operator.imageName" (list $registry .Values.operator.trainerImage.repository) }}
{{- printf "%s:%s" $name (default .Chart.AppVersion .Values.operator.trainerImage.tag) }}
{{- end }}

{{/*
Namespace of an optional monitoring object: its own override, else the release namespace.
Usage: include "nsm-operator.objectNamespace" (list . .Values.serviceMonitor.namespace)
*/}}
{{- define "nsm-operator.objectNamespace" -}}
{{- $root := index . 0 }}
{{- default $root.Release.Namespace (index . 1) }}
{{- end }}
