#!/bin/sh
# Installs the Debian 12 packages Parley needs. Usage: scripts/install-deps.sh [build|test|all]
# Only packages that are missing are installed, so a second run is quick and needs no network.
set -eu
what=${1:-build}
build="make gcc pkg-config libuv1-dev libhttp-parser-dev libjansson-dev libjwt-dev
libsodium-dev libssl-dev libsqlite3-dev libcurl4-openssl-dev libncurses-dev"
test="$build libcmocka-dev clang libclang-rt-14-dev tmux python3 procps"
case "$what" in
build) pkgs=$build ;;
test | all) pkgs=$test ;;
*) echo "usage: $0 [build|test|all]" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
