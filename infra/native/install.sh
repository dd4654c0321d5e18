#!/usr/bin/env bash
# Install what the native stack needs, idempotently (a second run takes seconds):
#   - PostgreSQL (and Java 17 / Maven where missing) from apt, when running as root on Debian/Ubuntu;
#   - the stack's jars, resolved by Maven from infra/native/pom.xml into the build folder (cache: ~/.m2): Kafka,
#     Debezium, Flink's connectors, Spark's Kafka source/sink (build/spark/jars, for pyspark's spark.jars),
#     Hudi's Spark 3.5 bundle with the s3a filesystem (build/hudi/jars, for the Flink environment's pyspark 3.5) and
#     the Apicurio schema registry's server bundle (unpacked into build/registry; it runs on Java 21+);
#   - the Go programs pinned in infra/native/go-tools.txt, `go install`ed into the build folder;
#   - OpenTofu and its providers (Kafka, PostgreSQL) from their wrapper modules under infra/native/go/
#     (build-go.sh; seconds when up to date). The Kubernetes plane is built on first need
#     (`delab stack build kubernetes`), not here: it takes 10-25 min.
# Build folder: $DELAB_STACK_BUILD_DIR, else ${DELAB_STACK_DIR:-<repo>/.delab/stack}/build (as delab.stack.layout).
# Learners without apt: `conda env create -f environment.yml` (or brew) brings Java, Maven, Go and PostgreSQL.
# With DELAB_BUNDLE=DIR (an offline bundle, scripts/bundle): Maven runs offline on DIR's repository, the Go programs
# come prebuilt from DIR, and system packages must already be installed (the bundle holds none).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${DELAB_STACK_BUILD_DIR:-${DELAB_STACK_DIR:-$root/.delab/stack}/build}"
mkdir -p "$build"

say() { printf '[stack install] %s\n' "$*"; }
die() { printf '[stack install] error: %s\n' "$*" >&2; exit 1; }

have_pg() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1
}
java_major() {
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$java" >/dev/null 2>&1 || { echo 0; return; }
  "$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p'
}

# --- system packages --------------------------------------------------------------------------------------------
missing=()
have_pg || missing+=(postgresql)
[ "$(java_major)" -ge 17 ] 2>/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# the browser `make test` drives (tests/test_browser.py): Debian's Chromium and its chromedriver. Installed where
# apt is ours to use; elsewhere only a note (learners use their own browser; `delab doctor` says how to get it).
if ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -z "${DELAB_BUNDLE:-}" ]; then
    missing+=(chromium chromium-driver)
  else
    say "note: no chromedriver — only make test's browser test needs it (apt install chromium chromium-driver)"
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  [ -z "${DELAB_BUNDLE:-}" ] ||
    die "missing ${missing[*]}: the offline bundle holds no system packages: install them before the workshop (apt install ${missing[*]}; or brew/conda: see environment.yml)"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "apt-get install ${missing[*]}"
    # Debian's postgresql package would create and start a "main" cluster on port 5432: the stack runs its own.
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
      mkdir -p /etc/postgresql-common
      echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "missing ${missing[*]}: install them (apt install ${missing[*]}; or brew/conda: see environment.yml)"
  fi
fi
[ -n "${DELAB_BUNDLE:-}" ] || command -v go >/dev/null 2>&1 || die "Go >= 1.25 not found: install it (conda install -c conda-forge 'go>=1.25', brew install go, or the Go toolchain for your OS)"

# --- jars (Maven) -----------------------------------------------------------------------------------------------
poms=("$here/pom.xml" "$here"/*/pom.xml)
mvn_stamp="$(cat "${poms[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$build/.jars.stamp" 2>/dev/null)" != "$mvn_stamp" ]; then
  offline=()
  [ -z "${DELAB_BUNDLE:-}" ] || offline=(-o -Dmaven.repo.local="$DELAB_BUNDLE/maven/repository")
  say "resolving jars with Maven (${offline[*]:-cache: ~/.m2})"
  rm -rf "$build/kafka" "$build/connect-plugins" "$build/flink" "$build/spark" "$build/hudi" "$build/registry"
  log="$build/.mvn.log"
  if ! mvn -q -B -Dstyle.color=never ${offline[@]+"${offline[@]}"} -f "$here/pom.xml" package -Ddelab.build="$build" >"$log" 2>&1; then
    cat "$log" >&2
    die "Maven could not resolve the stack's jars (log above; cache in ~/.m2)"
  fi
  echo "$mvn_stamp" > "$build/.jars.stamp"
else
  say "jars up to date"
fi

# --- Go programs ------------------------------------------------------------------------------------------------
mkdir -p "$build/bin"
[ -z "${DELAB_BUNDLE:-}" ] || "$root/scripts/bundle" restore-go "$DELAB_BUNDLE" "$build"
while read -r pkg version; do
  case "$pkg" in ''|'#'*) continue ;; esac
  name="${pkg##*/}"
  if [ -x "$build/bin/$name" ] && [ "$(cat "$build/bin/.$name.version" 2>/dev/null)" = "$version" ]; then
    say "$name $version up to date"
    continue
  fi
  command -v go >/dev/null 2>&1 || die "$name $version is not in the offline bundle and Go is not installed to build it"
  say "go install $pkg@$version"
  GOBIN="$build/bin" GOFLAGS="${GOFLAGS:-} -trimpath" go install -ldflags "-s -w" "$pkg@$version"
  echo "$version" > "$build/bin/.$name.version"
done < "$here/go-tools.txt"

# --- OpenTofu and providers (wrapper modules: `go install` refuses their replace directives) -------------------
for wrapper in tofu kafka-provider postgres-provider; do
  "$here/build-go.sh" "$wrapper"
done

say "done: $build"
