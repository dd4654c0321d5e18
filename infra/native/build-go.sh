#!/usr/bin/env bash
# Build the programs of one Go wrapper module (infra/native/go/<name>/) into <build>/<name>/bin.
#
# A wrapper module pins a tool that `go install pkg@version` refuses (its go.mod has replace directives): its
# go.mod requires the tool's module at one version, copies the replace lines it needs, and lists the programs as
# `tool` directives; go.sum pins every checksum. Optional files beside it:
#   ldflags   extra -ldflags (e.g. -X lines so `kubectl version` tells the truth)
# Re-runs are instant: <build>/<name>/.stamp holds a hash of go.mod, go.sum and ldflags.
# Usage: build-go.sh NAME   (build folder: as install.sh)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${DELAB_STACK_BUILD_DIR:-${DELAB_STACK_DIR:-$root/.delab/stack}/build}"
name="${1:?usage: build-go.sh NAME}"
src="$here/go/$name"
[ -f "$src/go.mod" ] || { echo "[build-go] error: no wrapper module $src" >&2; exit 2; }
out="$build/$name"
flags="$(cat "$src/ldflags" 2>/dev/null || true)"
key="$(cat "$src/go.mod" "$src/go.sum" <(echo "$flags") | sha256sum | cut -c1-16)"
if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$key" ]; then
  echo "[build-go] $name up to date"
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "[build-go] error: Go not found (see environment.yml)" >&2; exit 1; }
mkdir -p "$out/bin"
rm -f "$out/.stamp"
# the wrapper holds no .go file: never tidy it (that would drop the requirements); -mod=mod lets go fill go.sum
# entries that only a build needs, read from the pinned versions
export GOFLAGS="${GOFLAGS:-} -mod=mod -trimpath" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
tools="$(cd "$src" && go mod edit -json | jq -r '.Tool[]?.Path')"
start=$SECONDS
echo "[build-go] go build $(echo $tools) -> $out/bin"
# one build for all the programs: the compile graph is shared and the links run in parallel
(cd "$src" && go build -ldflags "-s -w $flags" -o "$out/bin/" $tools)
# go.etcd.io/etcd/server/v3 is etcd's main package: go names its binary after "server"
if [ -x "$out/bin/server" ] && [ "$name" = etcd ]; then mv -f "$out/bin/server" "$out/bin/etcd"; fi
echo "$key" > "$out/.stamp"
echo "[build-go] $name built in $((SECONDS - start)) s"
