#!/usr/bin/env bash
# Makes the webhook's serving certificate and fills the MutatingWebhookConfiguration's caBundle.
#   bash docker/kubernetes/webhook-certs.sh <out-dir>
# writes <out-dir>/ca.crt, tls.crt, tls.key, webhook-certs-secret.yaml (Secret meshproxy-webhook-certs)
# and webhook.yaml (caBundle filled). Apply: kubectl apply -f <out-dir>/webhook-certs-secret.yaml -f <out-dir>/webhook.yaml
# With cert-manager, use its CA injector instead and keep the placeholder out of the cluster.
set -euo pipefail
out=${1:?usage: webhook-certs.sh <out-dir>}
here=$(cd "$(dirname "$0")" && pwd)
service=meshproxy-controlplane
namespace=meshproxy-system
days=${DAYS:-365}
mkdir -p "$out"
cd "$out"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -keyout ca.key -out ca.crt -subj "/CN=meshproxy-webhook-ca" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout tls.key -out tls.csr -subj "/CN=$service.$namespace.svc" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
  "$service" "$service" "$namespace" "$service" "$namespace" "$service" "$namespace" > san.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -extfile san.ext -out tls.crt 2>/dev/null
rm -f tls.csr san.ext ca.srl

b64() { base64 < "$1" | tr -d '\n'; }
cat > webhook-certs-secret.yaml <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: meshproxy-webhook-certs
  namespace: $namespace
type: kubernetes.io/tls
data:
  tls.crt: $(b64 tls.crt)
  tls.key: $(b64 tls.key)
YAML
sed "s|CA_BUNDLE_PLACEHOLDER|$(b64 ca.crt)|g" "$here/webhook.yaml" > webhook.yaml
echo "wrote $out/{ca.crt,tls.crt,tls.key,webhook-certs-secret.yaml,webhook.yaml}"
