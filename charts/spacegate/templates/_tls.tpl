{{/*
Serving certificate helpers, for the three certificates.mode values (helm, cert-manager, secret).
*/}}

{{/*
The DNS names the serving certificate covers. The apiserver verifies `<svc>.<ns>.svc`
(docs/protocol.md §4); the shorter and longer forms cover in-cluster clients such as a
Prometheus scrape. First entry is also the certificate's common name.
Usage: {{ include "spacegate.tls.dnsNames" . | fromYamlArray }}
*/}}
{{- define "spacegate.tls.dnsNames" -}}
{{- $svc := include "spacegate.fullname" . -}}
{{- $ns := .Release.Namespace -}}
- {{ printf "%s.%s.svc" $svc $ns }}
- {{ $svc }}
- {{ printf "%s.%s" $svc $ns }}
- {{ printf "%s.%s.svc.cluster.local" $svc $ns }}
{{- with (include "spacegate.webhook.urlHost" .) }}
{{- if not (regexMatch "^[0-9.]+$" .) }}
- {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The host of `webhook.url` (out-of-cluster mode), without port or brackets; empty without it.
*/}}
{{- define "spacegate.webhook.urlHost" -}}
{{- with .Values.webhook.url -}}
{{- $host := (urlParse .).host -}}
{{- if hasPrefix "[" $host -}}
{{- $host | trimPrefix "[" | splitList "]" | first -}}
{{- else -}}
{{- $host | splitList ":" | first -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
IP addresses the serving certificate covers: the host of `webhook.url` when it is an IP.
Usage: {{ include "spacegate.tls.ipAddresses" . | fromYamlArray }}
*/}}
{{- define "spacegate.tls.ipAddresses" -}}
{{- with (include "spacegate.webhook.urlHost" .) }}
{{- if regexMatch "^[0-9.]+$" . }}
- {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The Secret holding tls.crt, tls.key and ca.crt that the pods mount. Each mode has its own
name, so switching modes never has Helm delete a Secret that cert-manager now owns.
*/}}
{{- define "spacegate.tls.secretName" -}}
{{- $mode := .Values.certificates.mode -}}
{{- if eq $mode "helm" -}}
{{- printf "%s-tls" (include "spacegate.fullname" .) -}}
{{- else if eq $mode "cert-manager" -}}
{{- printf "%s-certmanager-tls" (include "spacegate.fullname" .) -}}
{{- else -}}
{{- required "certificates.secret.name is required when certificates.mode is secret: the name of an existing Secret with tls.crt and tls.key" .Values.certificates.secret.name -}}
{{- end -}}
{{- end -}}

{{/*
helm mode: the CA lives in its own Secret (ca.crt, ca.key) that no pod mounts, so the CA key
never reaches the webhook container.
*/}}
{{- define "spacegate.tls.caSecretName" -}}
{{- printf "%s-ca" (include "spacegate.fullname" .) -}}
{{- end -}}

{{/*
cert-manager mode: the Certificate whose Secret's ca.crt cainjector copies into caBundle.
*/}}
{{- define "spacegate.tls.certManagerCertificateName" -}}
{{- printf "%s-serving" (include "spacegate.fullname" .) -}}
{{- end -}}

{{/*
helm mode material, as YAML with base64 fields caCrt, caKey, tlsCrt, tlsKey.

The CA is looked up in the existing CA Secret and reused, so `helm upgrade` never changes the
caBundle behind the apiserver's back; only a first install (or a deleted CA Secret) generates
a new one. The serving certificate is re-issued from that CA on every render: still trusted
by the same caBundle, and any upgrade renews it (the server reloads it without a restart).

genCA/genSignedCert are random, so this must be evaluated once per render and its result
shared: webhooks.yaml holds the Secrets and both webhook configurations for that reason.
Under `helm template` and client-side dry runs `lookup` returns nothing, so those print a
fresh CA every time.
Usage: {{ $tls := include "spacegate.tls.helmMaterial" . | fromYaml }}
*/}}
{{- define "spacegate.tls.helmMaterial" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "spacegate.tls.caSecretName" .) -}}
{{- $data := dict -}}
{{- if $existing -}}
{{- $data = $existing.data | default dict -}}
{{- end -}}
{{- $ca := dict -}}
{{- if and (index $data "ca.crt") (index $data "ca.key") -}}
{{- $ca = buildCustomCert (index $data "ca.crt") (index $data "ca.key") -}}
{{- else -}}
{{- $ca = genCA (printf "%s-ca" (include "spacegate.fullname" .)) (int .Values.certificates.helm.caValidityDays) -}}
{{- end -}}
{{- $names := include "spacegate.tls.dnsNames" . | fromYamlArray -}}
{{- $ips := include "spacegate.tls.ipAddresses" . | fromYamlArray -}}
{{- $cert := genSignedCert (first $names) $ips $names (int .Values.certificates.helm.certValidityDays) $ca -}}
caCrt: {{ $ca.Cert | b64enc }}
caKey: {{ $ca.Key | b64enc }}
tlsCrt: {{ $cert.Cert | b64enc }}
tlsKey: {{ $cert.Key | b64enc }}
{{- end -}}

{{/*
The cert-manager.io/inject-ca-from annotation value: <namespace>/<Certificate name>.
*/}}
{{- define "spacegate.tls.injectCAFrom" -}}
{{- printf "%s/%s" .Release.Namespace (include "spacegate.tls.certManagerCertificateName" .) -}}
{{- end -}}
