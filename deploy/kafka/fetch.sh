#!/usr/bin/env bash
# Copy the Apache Kafka 3.9.1 broker jars from Maven Central into a cache directory.
#
#   deploy/kafka/fetch.sh [DIR]
#
# DIR defaults to $HOTPATH_KAFKA_LIBS, else ~/.cache/hotpath/kafka-3.9.1/libs. Idempotent:
# a stamp file written after a complete copy makes later runs return at once. The jars go
# to a temporary directory first and are moved into place whole, so an interrupted run
# never leaves a half-filled DIR that looks complete.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-${HOTPATH_KAFKA_LIBS:-$HOME/.cache/hotpath/kafka-3.9.1/libs}}"
stamp="$dest/.complete"

if [[ -f "$stamp" ]] && cmp -s "$stamp" "$here/pom.xml"; then
    echo "kafka jars already in $dest"
    exit 0
fi

if ! command -v mvn >/dev/null; then
    echo "fetch.sh: mvn not found; install it with: apt-get install maven" >&2
    exit 1
fi

mkdir -p "$(dirname "$dest")"
tmp="$(mktemp -d "$(dirname "$dest")/.libs.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "resolving Kafka jars with Maven into $dest"
mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp"

# The stamp is a copy of the pom: editing the pom (a new version) invalidates the cache.
cp "$here/pom.xml" "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$(find "$dest" -name '*.jar' | wc -l) jars in $dest"
