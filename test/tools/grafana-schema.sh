#!/usr/bin/env bash
# Prepares Grafana's dashboard schema for test/chart, offline afterwards:
# npm @grafana/schema (Grafana's own TypeScript types of the dashboard
# model) turned into a JSON schema by ts-json-schema-generator, validated
# with ajv. Installs $TOOLS_DIR/bin/validate-dashboards FILE...
# (exit 1 and one line per error when a dashboard breaks the schema).
# Needs node and npm (installed with apt-get when missing) and the npm
# registry. About 30 s cold.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCHEMA=13.2.3 GENERATOR=2.10.0 AJV=8.20.0
VERSION="$SCHEMA-tsjsg$GENERATOR-ajv$AJV"
cached grafana-schema "$VERSION" validate-dashboards && exit 0
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    log "grafana-schema: needs node and npm: run 'sudo apt-get install -y nodejs npm'"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_get() { apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 "$@"; }
  log "grafana-schema: apt-get install nodejs npm"
  apt_get install -y --no-install-recommends nodejs npm || { apt_get update && apt_get install -y --no-install-recommends nodejs npm; }
fi

dir="$TOOLS_DIR/grafana-schema-$VERSION"
rm -rf "$dir.tmp" && mkdir -p "$dir.tmp" && cd "$dir.tmp"
echo '{"private": true}' > package.json
log "grafana-schema $VERSION: npm install"
npm install --no-audit --no-fund --ignore-scripts --loglevel=error \
  "@grafana/schema@$SCHEMA" "ts-json-schema-generator@$GENERATOR" "ajv@$AJV"
# The classic (v1) dashboard model, the JSON Grafana's sidecar provisions.
node node_modules/ts-json-schema-generator/dist/ts-json-schema-generator.js \
  --path node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts \
  --type Dashboard --no-type-check -o dashboard.schema.json
cat > validate.js <<'JS'
// validate-dashboards FILE...: each Grafana dashboard JSON against the schema
// generated from @grafana/schema's Dashboard type (unknown fields are errors).
const fs = require("fs");
const path = require("path");
const Ajv = require(path.join(__dirname, "node_modules", "ajv"));
const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(JSON.parse(fs.readFileSync(path.join(__dirname, "dashboard.schema.json"), "utf8")));
let bad = 0;
for (const f of process.argv.slice(2)) {
  if (validate(JSON.parse(fs.readFileSync(f, "utf8")))) {
    console.log(`${f}: valid`);
    continue;
  }
  bad++;
  for (const e of validate.errors) console.log(`${f}: ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
}
process.exit(bad ? 1 : 0);
JS
cat > validate-dashboards <<'SH'
#!/bin/sh
exec node "$(dirname "$(readlink -f "$0")")/validate.js" "$@"
SH
chmod +x validate-dashboards
cd / && rm -rf "$dir" && mv "$dir.tmp" "$dir"
publish grafana-schema "$VERSION" validate-dashboards
