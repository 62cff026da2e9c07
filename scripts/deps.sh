#!/bin/sh
# Install the Debian packages the project needs, only those missing.
# Usage: scripts/deps.sh [build|check|bench|all]   (default: all)
set -eu

build="meson ninja-build pkg-config gcc clang llvm liblwip-dev libxdp-dev libbpf-dev libelf-dev zlib1g-dev libcmocka-dev libcap-dev libseccomp-dev libext2fs-dev e2fsprogs"
runtime="iproute2 ethtool xdp-tools"
check="curl iperf3 python3 tcpdump procps psmisc netcat-openbsd iputils-ping redis-server redis-tools memcached libmemcached-tools lighttpd wrk nginx-light sqlite3 tar"
bench="wrk redis-server redis-tools memcached libmemcached-tools nginx-light gnuplot-nox iperf3 sockperf fio time"

case "${1:-all}" in
build) want="$build" ;;
check) want="$build $runtime $check" ;;
bench) want="$build $runtime $check $bench" ;;
all) want="$build $runtime $check" ;;
*) echo "usage: $0 [build|check|bench|all]" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run as root (or: sudo apt-get install$missing)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
