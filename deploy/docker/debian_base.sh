#!/usr/bin/env bash
# A local stand-in for python:3.11-slim-bookworm, for machines that reach Debian's package
# mirror but no container registry: Debian bookworm (minbase) with Debian's Python 3.11, its
# venv module and the CA certificates, made by debootstrap and imported as an image.
#
#   sudo deploy/docker/debian_base.sh [ENGINE]     # ENGINE: podman (default) or docker
#
# It prints the image's name, localhost/genserve-base:py3.11-bookworm-<hash>, where <hash> is
# the start of this file's sha256: an image of that name is made by this very script, so it is
# reused when present (FORCE=1 remakes it). Needs root (debootstrap), debootstrap and
# MIRROR (default http://deb.debian.org/debian); `make image` calls it when the base cannot be
# pulled. No proxy CA goes in: a build behind a TLS-inspecting proxy takes it as a secret.
set -euo pipefail

ENGINE=${1:-podman}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
IMAGE=localhost/genserve-base:py3.11-bookworm-$HASH

if [ "${FORCE:-0}" != 1 ] && "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "debootstrap is missing: apt-get install debootstrap" >&2
    exit 1
}

ROOT=$(mktemp -d /var/tmp/genserve-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates,netbase,tzdata \
    bookworm "$ROOT" "$MIRROR" >&2

# Debian's own sources, as in Debian's images, and no caches.
rm -f "$ROOT/etc/apt/sources.list"
cat > "$ROOT/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: ${MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
# Debian's images drop the same: documentation, manual pages and translations.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
    "$ROOT"/var/log/* "$ROOT"/tmp/* "$ROOT"/root/.cache \
    "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/*
python_version=$(chroot "$ROOT" python3 -c 'import platform; print(platform.python_version())')

tar --numeric-owner --xattrs -C "$ROOT" -c . | "$ENGINE" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL org.opencontainers.image.description=Debian bookworm (debootstrap) with Python $python_version" \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >&2
echo "$IMAGE"
