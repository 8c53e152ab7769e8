#!/usr/bin/env bash
# Installs, from Debian and only if missing, what `npm run image` and the
# release tests need: buildah (builds the image without a Docker daemon),
# qemu-user-static (runs the linux/arm64 binary on x86-64), and arm64 among
# apt's architectures (the image's arm64 glibc and tini come from arm64 .debs).
# Run as root; `npm test` runs it before the tests.
set -euo pipefail

packages=()
command -v buildah >/dev/null || packages+=(buildah)
command -v qemu-aarch64-static >/dev/null || packages+=(qemu-user-static)
command -v unshare >/dev/null || packages+=(util-linux)
foreign=$(dpkg --print-foreign-architectures)
# arm64 added but apt's lists never fetched for it: an update is due too.
arm64_known() { apt-cache policy libc6:arm64 2>/dev/null | grep -Eq 'Candidate: [0-9]'; }
if [ ${#packages[@]} -eq 0 ] && grep -qx arm64 <<<"$foreign" && arm64_known; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-tools.sh: run it as root; it installs: ${packages[*]:-nothing}, and adds arm64 to apt's architectures" >&2
  exit 1
fi
grep -qx arm64 <<<"$foreign" || dpkg --add-architecture arm64
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ${#packages[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
