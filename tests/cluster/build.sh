#!/usr/bin/env bash
# Builds the real control plane the tests run against, from upstream Go modules at the versions
# pinned by the go.mod/go.sum files under tests/cluster/modules/ (and CoreDNS's under
# tests/cluster/kubelet/coredns/), and renders Kueue's and JobSet's release manifests from their
# modules' config/ folders as their release process does (and copies the ProvisioningRequest CRD
# that Kueue is built against: a cluster autoscaler's API, which Kueue's flex-start check drives).
#
# Output: one folder per set of versions, outside the repository (binaries are large and the same
# for every worktree), printed as the last line of stdout:
#   ${MLINFRA_CLUSTER_CACHE:-~/.cache/jupyter-mlinfra/cluster}/<key>/{bin,manifests}
# The key names the versions and hashes every input (the go.mod/go.sum files, this script, the Go
# toolchain), so a second run finds the folder complete and builds nothing. Each module's binaries
# are also kept under store/<module>-<hash of that module's inputs>, so a change to one module
# (a new Kueue) rebuilds that module only.
#
# Usage: tests/cluster/build.sh            build if needed, print the folder
#        tests/cluster/build.sh --print    print the folder it would use, build nothing
set -euo pipefail

# Everything runs from main, called on the last line: bash has then read the whole file before
# it starts, so editing this script while a build runs cannot change what that build does.
main() {
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  modules=$here/modules
  # CoreDNS, the cluster DNS that the test kubelet runs beside the control plane: its module
  # lives with the kubelet (tests/cluster/kubelet/coredns), whose README says why.
  coredns_module=$here/kubelet/coredns
  cache_root=${MLINFRA_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-mlinfra/cluster}

  k8s=$(pinned "$modules/kubernetes" k8s.io/kubernetes)
  etcd=$(pinned "$modules/etcd" go.etcd.io/etcd/server/v3)
  jobset=$(pinned "$modules/jobset" sigs.k8s.io/jobset)
  kueue=$(pinned "$modules/kueue" sigs.k8s.io/kueue)
  kustomize=$(pinned "$modules/kustomize" sigs.k8s.io/kustomize/kustomize/v5)
  coredns=$(pinned "$coredns_module" github.com/coredns/coredns)

  key="k8s-$k8s.etcd-$etcd.jobset-$jobset.kueue-$kueue.$(
    { cat "${BASH_SOURCE[0]}"; inputs_of "$modules"/* "$coredns_module"; } | sha256sum | cut -c1-12
  )"
  out=$cache_root/$key
  if [[ ${1:-} == --print ]]; then echo "$out"; return; fi
  if [[ -f $out/complete ]]; then
    touch "$out" # in use: see prune
    echo "$out"
    return
  fi

  mkdir -p "$cache_root/store"
  # One build at a time per cache (two test sessions may start together); the second one
  # waits, then finds the folder complete.
  exec 9>"$cache_root/.lock"
  flock 9
  if [[ -f $out/complete ]]; then echo "$out"; return; fi

  work=$(mktemp -d "$cache_root/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/bin" "$work/manifests"

  # Kubernetes stamps its version at link time (hack/lib/version.sh); without it the API server
  # reports v0.0.0-master and clients warn about skew. The same flags for every binary.
  local minor=${k8s#v1.} pkg k8s_ldflags=""
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    k8s_ldflags+=" -X $pkg.gitTreeState=clean"
  done
  build "$modules/kubernetes" "$k8s_ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  build "$modules/etcd" "" go.etcd.io/etcd/server/v3:etcd
  build "$modules/jobset" "-X sigs.k8s.io/jobset/pkg/version.GitVersion=$jobset" \
    sigs.k8s.io/jobset:jobset
  build "$modules/kueue" "-X sigs.k8s.io/kueue/pkg/version.GitVersion=$kueue" \
    sigs.k8s.io/kueue/cmd/kueue
  build "$modules/kustomize" "" sigs.k8s.io/kustomize/kustomize/v5:kustomize
  build "$coredns_module" "" .:coredns

  log "release manifests"
  render "$modules/kueue" sigs.k8s.io/kueue "registry.k8s.io/kueue/kueue:$kueue" kueue
  render "$modules/jobset" sigs.k8s.io/jobset "registry.k8s.io/jobset/jobset:$jobset" jobset
  # The ProvisioningRequest CRD (a cluster autoscaler's API, which Kueue's flex-start admission
  # check drives) at the version Kueue is built against, as Kueue's own e2e tests install it
  # (`make dep-crds`): Kueue starts its provisioning controller only if it is served.
  cp "$(go list -C "$modules/kueue" -m -f '{{.Dir}}' k8s.io/autoscaler/cluster-autoscaler/apis)/config/crd/autoscaling.x-k8s.io_provisioningrequests.yaml" \
    "$work/manifests/provisioningrequest.yaml"
  chmod u+w "$work/manifests/provisioningrequest.yaml"

  printf '{"kubernetes": "%s", "etcd": "%s", "jobset": "%s", "kueue": "%s", "kustomize": "%s", "coredns": "%s"}\n' \
    "$k8s" "$etcd" "$jobset" "$kueue" "$kustomize" "$coredns" >"$work/versions.json"
  touch "$work/complete"
  rm -rf "$out"
  mv "$work" "$out"
  trap - EXIT
  prune
  log "built $out"
  echo "$out"
}

# Builds of other versions that no run has used for a week go (each run touches its folder; a
# binary still linked from a kept folder stays on disk through that link).
prune() {
  find "$cache_root" "$cache_root/store" -mindepth 1 -maxdepth 1 -type d \
    ! -name store ! -name '.*' -mtime +7 -exec rm -rf {} +
}

# Paths of the build machine and our repository's commit stay out of the binaries (the same
# inputs give the same binary; no git needed); -ldflags adds "-s -w" (no symbol table, no DWARF:
# a third of the size).
go_flags=(-trimpath -buildvcs=false)
# Static binaries, as Kubernetes' releases are built: no C compiler needed.
export CGO_ENABLED=0

log() { printf '[build.sh %4ss] %s\n' "$SECONDS" "$*" >&2; }

# The version of MODULE that the go.mod in DIR requires.
pinned() {
  local version
  version=$(awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { v = ($1 == m) ? $2 : $3 }
    END { print v }' "$1/go.mod")
  [[ $version == v* ]] || { echo "build.sh: $1/go.mod does not require $2" >&2; exit 1; }
  echo "$version"
}

# What the builds of the modules in DIR... depend on besides the flags: the Go toolchain, their
# go.mod and go.sum (and any source of ours beside them).
inputs_of() {
  local dir file
  go version
  for dir in "$@"; do
    for file in "$dir"/*; do
      printf '%s\n' "${file#"$here"/}"
      cat "$file"
    done
  done
}

# build DIR LDFLAGS PACKAGE[:NAME]...: the main packages of the module in DIR, built once into
# the store and linked into this build's bin/ (NAME when the package's last element is not the
# binary's name).
build() {
  local dir=$1 ldflags=$2 store item package name
  shift 2
  store=$cache_root/store/$(basename "$dir")-$(
    { inputs_of "$dir"; echo "${go_flags[*]} $ldflags $*"; } | sha256sum | cut -c1-12
  )
  if [[ ! -f $store/complete ]]; then
    log "building $(basename "$dir"): $*"
    rm -rf "$store.tmp"
    mkdir -p "$store.tmp"
    for item in "$@"; do
      package=${item%%:*}
      name=${item#*:}
      [[ $item == *:* ]] || name=$(basename "$package")
      nice -n 10 go build -C "$dir" "${go_flags[@]}" -ldflags="-s -w $ldflags" \
        -o "$store.tmp/$name" "$package"
    done
    touch "$store.tmp/complete"
    mv "$store.tmp" "$store"
  fi
  for item in "$store"/*; do
    [[ $(basename "$item") == complete ]] || ln "$item" "$work/bin/"
  done
}

# render DIR MODULE IMAGE NAME: the release manifest, as `make artifacts` makes it: the manager's
# image set to the release's, then `kustomize build config/default`. The module cache is
# read-only: this works on a copy.
render() {
  local dir=$1 module=$2 image=$3 name=$4 src copy
  src=$(go list -C "$dir" -m -f '{{.Dir}}' "$module")
  copy=$work/src-$name
  mkdir -p "$copy"
  cp -r "$src/config" "$copy/"
  chmod -R u+w "$copy"
  (cd "$copy/config/components/manager" && "$work/bin/kustomize" edit set image "controller=$image")
  if ! "$work/bin/kustomize" build "$copy/config/default" -o "$work/manifests/$name.yaml" \
    2>"$copy.log"; then
    cat "$copy.log" >&2
    exit 1
  fi
  # JobSet's kustomization still uses commonLabels, which kustomize warns about
  grep -v "'commonLabels' is deprecated" "$copy.log" >&2 || true
  rm -rf "$copy" "$copy.log"
}

main "$@"
