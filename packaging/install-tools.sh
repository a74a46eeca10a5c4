#!/usr/bin/env bash
# Installs what packaging/deb.sh and the ARM checks need, skipping what is
# there already (see packaging/README.md). Debian packages need root.
set -euo pipefail

# Pinned, so that a package built today and one built next month come from
# the same tools.
CARGO_DEB_VERSION=3.8.0
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1

need_apt=()
command -v objdump >/dev/null || need_apt+=(binutils)
command -v qemu-aarch64 >/dev/null && command -v qemu-arm >/dev/null || need_apt+=(qemu-user)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need_apt+=(libc6-arm64-cross)
[ -e /usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 ] || need_apt+=(libc6-armhf-cross)
command -v dpkg-deb >/dev/null || need_apt+=(dpkg)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: missing Debian packages: ${need_apt[*]}; install them as root" >&2
        exit 1
    fi
    echo "installing Debian's ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done

if ! command -v cargo-zigbuild >/dev/null || ! python3 -m ziglang version >/dev/null 2>&1; then
    echo "installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
fi

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "installing cargo-deb $CARGO_DEB_VERSION (crates.io)"
    cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi

echo "tools: $(cargo deb --version), $(cargo-zigbuild --version), zig $(python3 -m ziglang version)"
