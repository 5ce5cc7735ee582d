#!/usr/bin/env bash
# `make demo`: from a fresh machine to live probe results on the local cluster.
# Leaves the cluster and volprobe running; `make cluster-down` stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
export KUBECONFIG=$PWD/.cluster/kubeconfig
export PATH=$PWD/.cluster/bin:$PATH
localcluster() { PYTHONPATH=hack .venv/bin/python -m localcluster "$@"; }
release() { .venv/bin/python hack/release.py "$@"; }
version=$(release version)
registry=$(PYTHONPATH=hack .venv/bin/python -c 'from localcluster import registry; print(registry.ADDRESS)')

echo "== local cluster"
localcluster up --kwok-nodes "${KWOK_NODES:-3}"
echo "== volprobe's image and chart, built here and pushed to the cluster's registry ($registry)"
release image push chart
echo "== helm install volprobe from oci://$registry/charts/volprobe (probe for StorageClass standard)"
echo "   + a probe for StorageClass broken"
helm upgrade --install volprobe "oci://$registry/charts/volprobe" --version "$version" --plain-http \
  --namespace volprobe --create-namespace --values hack/demo/values.yaml --wait --timeout 180s >/dev/null
kubectl apply -f hack/demo/probes.yaml >/dev/null
echo "   + an ObjectStoreProbe for the cluster's S3 server (versitygw, bucket volprobe)"
read -r s3_key_id s3_secret < <(PYTHONPATH=hack .venv/bin/python -c \
  'from localcluster import objectstore as s; from localcluster.config import Layout; print(*s.credentials(Layout.default()))')
kubectl -n volprobe create secret generic local-s3-keys --from-literal=AWS_ACCESS_KEY_ID="$s3_key_id" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$s3_secret" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f hack/demo/objectstore.yaml >/dev/null
echo "== the node pulled the image (kubelet events of the controller pod)"
kubectl -n volprobe get events --field-selector reason=Pulled -o custom-columns=MESSAGE:.message --no-headers \
  | grep "$registry/volprobe:$version" | tail -2 || echo "   (none: the controller pod was already running)"

status() {
  kubectl get storageprobe "$1" -o \
    jsonpath='{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Degraded")].reason}' 2>/dev/null
}
echo "== live results (refreshing until standard passes, broken fails with a reason and local-s3 is Ready)"
deadline=$((SECONDS + 180))
while :; do
  echo "--- $(date +%T)"
  kubectl get storageprobes -o wide
  kubectl get objectstoreprobes
  standard=$(status standard); broken=$(status broken)
  s3=$(kubectl get objectstoreprobe local-s3 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)
  if [[ $standard == True/* && $broken == False/Provisioning* && $s3 == True ]]; then break; fi
  if ((SECONDS > deadline)); then echo "demo: probes did not settle within 3 minutes" >&2; exit 1; fi
  sleep 5
done
echo
echo "== why broken fails (kubectl describe storageprobe broken)"
kubectl describe storageprobe broken | sed -n '/^Status:/,$p' | grep -E "Reason|Message|Type|Status" | head -8
echo
echo "== a one-shot check of StorageClass standard (volprobe check)"
# --node-grace 0: the demo cluster's node is seconds old and would be skipped as too_new.
# --probe-image: the image just pushed (the default is the published one, ghcr.io/volprobe).
.venv/bin/volprobe check standard --mount-runs 2 --node-grace 0 --probe-image "$registry/volprobe:$version"
echo
echo "== a one-shot check of the ObjectStoreProbe (volprobe check-objectstore)"
.venv/bin/volprobe check-objectstore local-s3 --namespace volprobe
echo
pod=$(kubectl -n volprobe get pods -l app.kubernetes.io/component=controller -o jsonpath='{.items[0].status.podIP}')
cat <<INFO
== metrics
  curl -s http://$pod:8080/metrics | grep '^volprobe_probe_runs_total'
  (or: kubectl -n volprobe port-forward svc/volprobe-metrics 8080, then http://localhost:8080/metrics)

  export KUBECONFIG=$KUBECONFIG PATH=$PWD/.cluster/bin:\$PATH   # the cluster's kubectl and helm
  make cluster-down                                             # stop everything

demo ready in $((SECONDS - started))s
INFO
