#!/bin/sh
# Starts parleyd on localhost with embedded SQLite in ./var (used by `make run`).
# PORT and DATA may be set in the environment; extra flags go through PARLEYD_ARGS.
set -eu
port=${PORT:-8080}
data=${DATA:-./var}
cat <<MSG
Parley is starting on http://127.0.0.1:$port (data in $data). Stop it with Ctrl-C.

Connect a client from another terminal (the terminal client was built too):
  build/parley --server http://127.0.0.1:$port --profile /tmp/alice register alice
  build/parley --server http://127.0.0.1:$port --profile /tmp/bob register bob
  build/parley --profile /tmp/alice send bob "hello"
  build/parley --profile /tmp/bob              # the interactive client
Or speak the protocol by hand: build/parley-wscat ws://127.0.0.1:$port/v1/ws
(README.md "Try it by hand", docs/protocol.md).

MSG
# shellcheck disable=SC2086
exec build/parleyd --port "$port" --data "$data" ${PARLEYD_ARGS:-}
