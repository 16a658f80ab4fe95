#!/usr/bin/env bash
# Runs the README's test command (`npm test`) on the pinned Node LTS (scripts/install-node-lts.sh),
# in a copy of this checkout with its own node_modules, so the checkout's Node 20 install is not
# touched. better-sqlite3 is compiled against the LTS's own headers (npm_config_nodedir).
#
#   scripts/test-on-node-lts.sh                         # npm ci && npm test on the LTS
#   scripts/test-on-node-lts.sh npx vitest run ingest/  # any other command, in the same copy
#
# VITALMESH_LTS_DIR=dir keeps the copy there (reused: a second run only re-copies the sources
# and skips npm ci while package-lock.json is unchanged); by default it is a temporary
# directory, removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
src="$PWD"

lts="$(scripts/install-node-lts.sh)"
export PATH="$lts/bin:$PATH"
# node-gyp (run by npm for better-sqlite3) builds against these headers, downloads nothing
export npm_config_nodedir="$lts"

if [ -n "${VITALMESH_LTS_DIR:-}" ]; then
  work="$VITALMESH_LTS_DIR"; mkdir -p "$work"
else
  work="$(mktemp -d "${TMPDIR:-/tmp}/vitalmesh-lts-XXXXXX")"
  trap 'rm -rf "$work"' EXIT
fi

# the checkout's files as git sees them (tracked and new, not ignored: no node_modules, no data)
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - | tar -xf - -C "$work"
cd "$work"

echo "node LTS: $(command -v node) $(node --version), npm $(npm --version), in $work"
if [ "$(command -v node)" != "$lts/bin/node" ]; then
  echo "node LTS: \`node\` is $(command -v node), not $lts/bin/node" >&2
  exit 1
fi

if ! cmp -s package-lock.json node_modules/.package-lock.json.lts 2>/dev/null; then
  npm ci
  cp package-lock.json node_modules/.package-lock.json.lts
fi
node -e "const D=require('better-sqlite3'); const db=new D(':memory:'); console.log('node LTS: better-sqlite3', require('better-sqlite3/package.json').version, 'loads on', process.version, '(ABI', process.versions.modules + '), SQLite', db.prepare('select sqlite_version() v').get().v)"

if [ $# -gt 0 ]; then
  "$@"
else
  npm test
fi
