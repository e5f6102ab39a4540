#!/usr/bin/env bash
# Builds the real control plane the tests run against, from upstream Go modules at the versions
# pinned by the go.mod/go.sum files under tests/cluster/modules/, and renders Kueue's and
# JobSet's release manifests from their modules' config/ folders as their release process does.
#
# Output: one folder per set of versions, outside the repository (binaries are large and the same
# for every worktree), printed as the last line of stdout:
#   ${MLINFRA_CLUSTER_CACHE:-~/.cache/jupyter-mlinfra/cluster}/<key>/{bin,manifests}
# The key names the versions and hashes every input of the build (the go.mod/go.sum files, this
# script, the Go toolchain), so a second run finds the folder complete and builds nothing.
#
# Usage: tests/cluster/build.sh            build if needed, print the folder
#        tests/cluster/build.sh --print    print the folder it would use, build nothing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
modules=$here/modules
cache_root=${MLINFRA_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-mlinfra/cluster}

# The version of a module as pinned by one of our go.mod files (its require line).
pinned() { awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$modules/$1/go.mod"; }

k8s=$(pinned kubernetes k8s.io/kubernetes)
etcd=$(pinned etcd go.etcd.io/etcd/server/v3)
jobset=$(pinned jobset sigs.k8s.io/jobset)
kueue=$(pinned kueue sigs.k8s.io/kueue)
kustomize=$(pinned kustomize sigs.k8s.io/kustomize/kustomize/v5)
for v in "$k8s" "$etcd" "$jobset" "$kueue" "$kustomize"; do
  [[ -n $v ]] || { echo "build.sh: a version is missing from $modules/*/go.mod" >&2; exit 1; }
done

inputs_hash=$(
  {
    go version
    cat "${BASH_SOURCE[0]}"
    for f in "$modules"/*/go.mod "$modules"/*/go.sum; do printf '%s\n' "$f" | sed "s|^$modules/||"; cat "$f"; done
  } | sha256sum | cut -c1-12
)
key="k8s-$k8s.etcd-$etcd.jobset-$jobset.kueue-$kueue.$inputs_hash"
out=$cache_root/$key

if [[ ${1:-} == --print ]]; then echo "$out"; exit 0; fi
if [[ -f $out/complete ]]; then echo "$out"; exit 0; fi

mkdir -p "$cache_root"
# One build at a time per cache (two test sessions may start together); the second one waits,
# then finds the folder complete.
exec 9>"$cache_root/.lock"
flock 9
if [[ -f $out/complete ]]; then echo "$out"; exit 0; fi

work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/manifests"
log() { printf '[build.sh %4ss] %s\n' "$SECONDS" "$*" >&2; }

gobuild() { # gobuild MODULE_DIR OUTPUT LDFLAGS PACKAGE...
  local dir=$1 output=$2 ldflags=$3
  shift 3
  nice -n 10 go build -C "$modules/$dir" -trimpath -ldflags="-s -w $ldflags" -o "$output" "$@"
}

# Kubernetes stamps its version at link time (hack/lib/version.sh); without it the API server
# reports v0.0.0-master and clients warn about skew. The same flags for every binary.
minor=${k8s#v1.}
minor=${minor%%.*}
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

log "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $k8s"
gobuild kubernetes "$work/bin/" "$k8s_ldflags" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
log "etcd $etcd"
gobuild etcd "$work/bin/etcd" "" go.etcd.io/etcd/server/v3
log "jobset $jobset"
gobuild jobset "$work/bin/jobset" "-X sigs.k8s.io/jobset/pkg/version.GitVersion=$jobset" sigs.k8s.io/jobset
log "kueue $kueue"
gobuild kueue "$work/bin/kueue" "-X sigs.k8s.io/kueue/pkg/version.GitVersion=$kueue" sigs.k8s.io/kueue/cmd/kueue
log "kustomize $kustomize"
gobuild kustomize "$work/bin/kustomize" "" sigs.k8s.io/kustomize/kustomize/v5

# Release manifests, as `make artifacts` makes them: the manager image set to the release's
# image, then `kustomize build config/default`. The module cache is read-only: work on a copy.
render() { # render MODULE_DIR MODULE IMAGE OUTPUT
  local dir=$1 module=$2 image=$3 output=$4 src copy
  src=$(go list -C "$modules/$dir" -m -f '{{.Dir}}' "$module")
  copy=$work/src-$dir
  mkdir -p "$copy"
  cp -r "$src/config" "$copy/"
  chmod -R u+w "$copy"
  (cd "$copy/config/components/manager" && "$work/bin/kustomize" edit set image "controller=$image")
  "$work/bin/kustomize" build "$copy/config/default" -o "$output"
}
log "release manifests"
render kueue sigs.k8s.io/kueue "registry.k8s.io/kueue/kueue:$kueue" "$work/manifests/kueue.yaml"
render jobset sigs.k8s.io/jobset "registry.k8s.io/jobset/jobset:$jobset" "$work/manifests/jobset.yaml"
rm -rf "$work"/src-*

cat >"$work/versions.json" <<EOF
{"kubernetes": "$k8s", "etcd": "$etcd", "jobset": "$jobset", "kueue": "$kueue", "kustomize": "$kustomize"}
EOF
touch "$work/complete"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
log "built $out"
echo "$out"
