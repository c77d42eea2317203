#!/usr/bin/env bash
# Re-fetch the vendored browser libraries from the npm registry (`make vendor`), each
# pinned, with its licence, and check them against SHA256SUMS. Nothing here is built:
# the files are the packages' own prebuilt UMD bundles, served as they are.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fetch() {  # package@version, then "source-path:target-name" pairs
  local spec=$1; shift
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  local tgz; tgz=$(ls "$work"/*.tgz)
  mkdir -p "$work/x" "$spec"
  tar xzf "$tgz" -C "$work/x"
  for pair in "$@"; do
    cp "$work/x/package/${pair%%:*}" "$spec/${pair##*:}"
  done
  rm -rf "$work/x" "$tgz"
}
fetch react@18.2.0 umd/react.production.min.js:react.production.min.js LICENSE:LICENSE
fetch react-dom@18.2.0 umd/react-dom.production.min.js:react-dom.production.min.js LICENSE:LICENSE
fetch graphiql@3.8.3 graphiql.min.js:graphiql.min.js graphiql.min.css:graphiql.min.css LICENSE:LICENSE
fetch graphql-ws@5.16.2 umd/graphql-ws.min.js:graphql-ws.min.js LICENSE.md:LICENSE
sha256sum -c SHA256SUMS
