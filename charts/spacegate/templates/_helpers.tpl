{{/*
Names, labels and the values every template shares. Certificate helpers live in _tls.tpl.
*/}}

{{/*
The chart name, or nameOverride.
Usage: {{ include "spacegate.name" . }}
*/}}
{{- define "spacegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name: Deployment, Service, ConfigMap, and the cluster-scoped webhook configurations,
ClusterRole and ClusterRoleBinding. Truncated to 63 characters because the Service name must
be a DNS label (it becomes the serving certificate's host name).
Usage: {{ include "spacegate.fullname" . }}
*/}}
{{- define "spacegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
chart-version label value.
*/}}
{{- define "spacegate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: only the stable name/instance/component labels, because a Deployment's
selector is immutable and must not change when the chart or app version does.
Usage: {{- include "spacegate.selectorLabels" . | nindent 4 }}
*/}}
{{- define "spacegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spacegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/*
Standard labels on every object.
Usage: {{- include "spacegate.labels" . | nindent 4 }}
*/}}
{{- define "spacegate.labels" -}}
helm.sh/chart: {{ include "spacegate.chart" . }}
{{ include "spacegate.selectorLabels" . }}
app.kubernetes.io/part-of: spacegate
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "spacegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spacegate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The image reference: a digest wins over the tag; the tag defaults to the chart's appVersion.
*/}}
{{- define "spacegate.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
Namespaces neither webhook is called for, as a YAML list: kube-system and the release
namespace always (a broken webhook must not block the control plane or its own recovery),
then webhook.exemptNamespaces and config.policy.exemptNamespaces. The same list goes into the
webhooks' namespaceSelector and into the server config, so the two never disagree.
Usage: {{ include "spacegate.exemptNamespaces" . | fromYamlArray }}
*/}}
{{- define "spacegate.exemptNamespaces" -}}
{{- $policy := .Values.config.policy | default dict -}}
{{- $names := concat (list "kube-system" .Release.Namespace) (.Values.webhook.exemptNamespaces | default list) ($policy.exemptNamespaces | default list) -}}
{{- toYaml (uniq $names) -}}
{{- end -}}

{{/*
Paths inside the container. /etc/spacegate is one projected volume (config, TLS, registry
credentials), mounted as a directory so every file in it updates in place when its ConfigMap
or Secret changes; subPath mounts would never update.
*/}}
{{- define "spacegate.configDir" -}}/etc/spacegate{{- end -}}
{{- define "spacegate.certDir" -}}/etc/spacegate/tls{{- end -}}
{{- define "spacegate.credentialsDir" -}}/etc/spacegate/registries{{- end -}}

{{/*
The server config: values.config plus what only the chart knows (the exemptions above and
the mounted credential file paths). Fails on credential references the config cannot use.
Usage: {{ include "spacegate.config" . | fromYaml }}
*/}}
{{- define "spacegate.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $policy := deepCopy (.Values.config.policy | default dict) -}}
{{- $_ := set $policy "exemptNamespaces" (include "spacegate.exemptNamespaces" . | fromYamlArray) -}}
{{- $_ := set $config "policy" $policy -}}
{{- $credentials := dict -}}
{{- range $i, $ref := .Values.registryCredentials -}}
{{- if hasKey $credentials $ref.registry -}}
{{- fail (printf "registryCredentials[%d]: registry %q is listed twice" $i $ref.registry) -}}
{{- end -}}
{{- $_ := set $credentials $ref.registry $ref -}}
{{- end -}}
{{- $registries := list -}}
{{- $declared := list -}}
{{- range $i, $registry := (.Values.config.registries | default list) -}}
{{- $entry := deepCopy $registry -}}
{{- $declared = append $declared $registry.name -}}
{{- if hasKey $registry "credentials" -}}
{{- fail (printf "config.registries[%d].credentials: do not set credential paths in values; name an existing Secret under registryCredentials (registry: %s) and the chart mounts it and fills in the paths" $i $registry.name) -}}
{{- end -}}
{{- with get $credentials (toString $registry.name) -}}
{{- $dir := printf "%s/%s" (include "spacegate.credentialsDir" $) .registry -}}
{{- $_ := set $entry "credentials" (dict "usernameFile" (printf "%s/username" $dir) "passwordFile" (printf "%s/password" $dir)) -}}
{{- end -}}
{{- $registries = append $registries $entry -}}
{{- end -}}
{{- range $i, $ref := .Values.registryCredentials -}}
{{- if not (has $ref.registry $declared) -}}
{{- fail (printf "registryCredentials[%d].registry: %q is not a registry name under config.registries (declared: %s)" $i $ref.registry (join ", " $declared | default "none")) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "registries" $registries -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
Where the apiserver sends reviews: the Service, or with `webhook.url` (out-of-cluster mode:
spacegate runs outside the cluster, or tests run it as a local process) that URL plus the
path. Usage: {{ include "spacegate.webhook.target" (list . "/validate") }}
*/}}
{{- define "spacegate.webhook.target" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- with $root.Values.webhook.url -}}
url: {{ printf "%s%s" (trimSuffix "/" .) $path | quote }}
{{- else -}}
service:
  name: {{ include "spacegate.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ $path }}
  port: {{ $root.Values.service.port }}
{{- end -}}
{{- end -}}

{{/*
Whether RegistrySpaceBinding objects are read (config.bindings.source is not "config"): the
servers list and watch them, the leader writes their statuses, and the webhook sees their
changes. config.bindings is a list (source unset) or {source, requireAcknowledgement, items}.
Usage: {{ if eq (include "spacegate.bindingObjects" .) "true" }}
*/}}
{{- define "spacegate.bindingObjects" -}}
{{- $bindings := .Values.config.bindings -}}
{{- $source := "" -}}
{{- if kindIs "map" $bindings -}}{{- $source = $bindings.source | default "" -}}{{- end -}}
{{- ne $source "config" -}}
{{- end -}}

{{/*
spacegate's own namespace: the Lease, the robot credentials and the impact index live there.
*/}}
{{- define "spacegate.home" -}}
{{- (.Values.config.pullSecrets).credentialsNamespace | default .Release.Namespace -}}
{{- end -}}

{{/*
Whether the leader keeps the last-known-good copy of the registries' spaces in the cluster
(config.lastKnownGood.persist, on unless false) and there is a Harbor listed live (one
without static `spaces`) for it to hold: the Secret, its RBAC and the Lease are rendered.
Usage: {{ if eq (include "spacegate.lastKnownGood" .) "true" }}
*/}}
{{- define "spacegate.lastKnownGood" -}}
{{- $persist := true -}}
{{- $settings := .Values.config.lastKnownGood -}}
{{- if and (kindIs "map" $settings) (hasKey $settings "persist") -}}{{- $persist = $settings.persist -}}{{- end -}}
{{- $listed := false -}}
{{- range (.Values.config.registries | default list) -}}
{{- if and (eq (.type | default "") "harbor") (not (hasKey . "spaces")) -}}{{- $listed = true -}}{{- end -}}
{{- end -}}
{{- and $persist $listed -}}
{{- end -}}
