#!/usr/bin/env bash
# Installs a built edgeim package on this machine and walks it through its
# life: install, chat with the packaged binary and the packaged config,
# upgrade in place (the data stays), remove (the state stays), purge (it
# goes). Run as root, on a machine where edgeim is not installed otherwise:
#
#   sudo bash packaging/deb-test.sh target/debian/edgeim_0.1.0_amd64.deb
#
# Where systemd runs, installing starts the service on 127.0.0.1:8080 and
# :8081; the chat below needs those ports, so it stops the service first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -eq 1 ] || { echo "usage: $0 PACKAGE.deb" >&2; exit 2; }
deb="$1"
[ "$(id -u)" -eq 0 ] || { echo "error: $0 installs a package: run it as root" >&2; exit 1; }
if dpkg -s edgeim >/dev/null 2>&1; then
    echo "error: edgeim is already installed here; this test would remove it" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
systemd_runs() { [ -d /run/systemd/system ]; }
fail() { echo "error: $*" >&2; exit 1; }
state=/var/lib/edgeim

step() { printf -- '--> %s\n' "$*"; }

step "dpkg -i $deb"
dpkg -i "$deb"
[ -x /usr/bin/edgeim ] || fail "no /usr/bin/edgeim"
[ -f /usr/lib/systemd/system/edgeim.service ] || fail "no unit in /usr/lib/systemd/system"
grep -qx /etc/edgeim/edgeim.toml /var/lib/dpkg/info/edgeim.conffiles ||
    fail "/etc/edgeim/edgeim.toml is not a conffile"
if systemd_runs; then
    systemctl is-active --quiet edgeim || fail "installing did not start the service"
    systemctl stop edgeim
fi

step "chat through the packaged binary and config"
bash packaging/smoke.sh --config /etc/edgeim/edgeim.toml /usr/bin/edgeim
[ -f "$state/edgeim.db" ] || fail "the chat left no $state/edgeim.db"
printf 'upgrade-check-password\n' | /usr/bin/edgeim user add keeper --config /etc/edgeim/edgeim.toml

step "dpkg -i again (an upgrade in place keeps the data)"
dpkg -i "$deb"
/usr/bin/edgeim user list --config /etc/edgeim/edgeim.toml | grep -qw keeper ||
    fail "the upgrade lost the users"
if systemd_runs; then
    systemctl is-active --quiet edgeim || fail "the upgrade did not restart the service"
    systemctl stop edgeim
fi

step "dpkg -r edgeim (the state stays)"
dpkg -r edgeim
[ ! -e /usr/bin/edgeim ] || fail "dpkg -r left /usr/bin/edgeim"
[ -f "$state/edgeim.db" ] || fail "dpkg -r deleted the messages"
[ -f /etc/edgeim/edgeim.toml ] || fail "dpkg -r deleted the config (it is kept until purge)"

step "dpkg --purge edgeim (the state goes)"
dpkg --purge edgeim
for gone in "$state" /var/lib/private/edgeim /etc/edgeim; do
    [ ! -e "$gone" ] || fail "dpkg --purge left $gone"
done
dpkg -s edgeim >/dev/null 2>&1 && fail "dpkg still lists edgeim"
echo "deb-test: ok ($deb)"
