#!/usr/bin/env bash
# Builds the Debian package for one architecture:
#
#   bash packaging/deb.sh amd64|arm64|armhf
#
# leaves target/debian/edgeim_<version>_<ARCH>.deb. The binary is built with
# cargo-zigbuild against glibc 2.31, so one package installs on Debian 11
# and 12 and on Raspberry Pi OS bullseye and bookworm; the script checks the
# floor with objdump. Needs (packaging/README.md): rustup's target for ARCH,
# cargo-zigbuild and ziglang (pip), cargo-deb (cargo install), binutils.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

arch="${1:-}"
case "$arch" in
    amd64) triple=x86_64-unknown-linux-gnu ;;
    arm64) triple=aarch64-unknown-linux-gnu ;;
    armhf) triple=armv7-unknown-linux-gnueabihf ;;
    *)
        echo "usage: $0 amd64|arm64|armhf" >&2
        echo "(armhf is ARMv7: Raspberry Pi 2 and later on 32-bit Raspberry Pi OS;" >&2
        echo " the ARMv6 Pi Zero and Pi 1 are not supported, see docs/RASPBERRY-PI.md)" >&2
        exit 2
        ;;
esac
# Raspberry Pi OS bullseye and Debian 11 have glibc 2.31.
glibc_floor=2.31

for tool in cargo-zigbuild cargo-deb objdump; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is missing; see packaging/README.md for what to install" >&2
        exit 1
    fi
done
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple"
fi

cargo zigbuild --locked --release --target "$triple.$glibc_floor" --bin edgeim
bin="target/$triple/release/edgeim"
bash packaging/glibc-floor.sh "$bin" "$glibc_floor"

# The packaged unit runs /usr/bin/edgeim (systemd/edgeim.service is written
# for a hand install to /usr/local/bin); the packaged config keeps its data
# where the unit's StateDirectory puts it.
assets=target/debian-assets
mkdir -p "$assets"
{
    echo "# edgeim's systemd unit, as installed by the edgeim package."
    echo "# Configure in /etc/edgeim/edgeim.toml; add users with"
    echo "#   sudo edgeim user add NAME"
    echo "# and see /usr/share/doc/edgeim/OPERATIONS.md."
    sed -e '1,/^$/d' -e 's|/usr/local/bin/edgeim|/usr/bin/edgeim|g' systemd/edgeim.service
} >"$assets/edgeim.service"
grep -q '^ExecStart=/usr/bin/edgeim ' "$assets/edgeim.service" ||
    { echo "error: could not point the unit at /usr/bin/edgeim" >&2; exit 1; }
sed 's|^# data_dir = "data"$|data_dir = "/var/lib/edgeim"|' edgeim.toml >"$assets/edgeim.toml"
grep -q '^data_dir = "/var/lib/edgeim"$' "$assets/edgeim.toml" ||
    { echo "error: could not set data_dir in the packaged edgeim.toml" >&2; exit 1; }

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
out="target/debian/edgeim_${version}_${arch}.deb"
mkdir -p target/debian
# --no-strip: the release profile already strips.
cargo deb --locked --no-build --no-strip --target "$triple" --output "$out"
dpkg-deb --info "$out" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\): /  \1: /p'
echo "built $out"
