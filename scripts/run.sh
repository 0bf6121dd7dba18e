#!/bin/sh
# Starts parleyd on localhost with embedded SQLite in ./var (used by `make run`).
# PORT and DATA may be set in the environment; extra flags go through PARLEYD_ARGS.
set -eu
port=${PORT:-8080}
data=${DATA:-./var}
cat <<MSG
Parley is starting on http://127.0.0.1:$port (data in $data). Stop it with Ctrl-C.

Try it from another terminal:
  curl -s -X POST http://127.0.0.1:$port/v1/accounts -H 'Content-Type: application/json' \\
       -d '{"username":"alice","password":"correct horse"}'
The answer holds a token; open a WebSocket on ws://127.0.0.1:$port/v1/ws and send
  {"type":"auth","token":"<token>"} then {"type":"sync","after":0}
See README.md ("Try it by hand") and docs/protocol.md.

MSG
# shellcheck disable=SC2086
exec build/parleyd --port "$port" --data "$data" ${PARLEYD_ARGS:-}
