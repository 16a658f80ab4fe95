#!/bin/bash
# Run once by the influxdb:2.7 image after its initial setup (docker-entrypoint-initdb.d):
# maps the InfluxQL database name vitalmesh and Grafana query to the bucket (DBRP), so
# /query answers InfluxQL on 2.x as it does on 1.x.
set -euo pipefail
bucket_id="${DOCKER_INFLUXDB_INIT_BUCKET_ID:-$(influx bucket list --org "$DOCKER_INFLUXDB_INIT_ORG" --name "$DOCKER_INFLUXDB_INIT_BUCKET" --hide-headers | cut -f1)}"
influx v1 dbrp create --org "$DOCKER_INFLUXDB_INIT_ORG" --db "${INFLUXDB_DB:-vitalmesh}" --rp autogen --bucket-id "$bucket_id" --default
