#!/usr/bin/env bash
# Installs, from Debian's packages, what building the packages needs
# (utilities/build-packages) beyond utilities/install-deps.sh: dpkg-dev, debhelper,
# lintian, rpm, and the Build-Depends of debian/control.  Kept apart from
# install-deps.sh so that the common path (build and test) stays quick.  Idempotent:
# when everything is there it only checks and returns within a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=(dpkg-dev debhelper lintian rpm fakeroot)

missing=()
for p in "${tools[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

export DEBIAN_FRONTEND=noninteractive
updated=no
if ((${#missing[@]})); then
  echo "install-package-deps: installing ${missing[*]}" >&2
  apt-get update -qq
  updated=yes
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# debian/control's Build-Depends: dpkg-checkbuilddeps says what is missing, and apt
# installs exactly that from the source tree's control file.
if ! dpkg-checkbuilddeps debian/control >/dev/null 2>&1; then
  echo "install-package-deps: installing the Build-Depends of debian/control" >&2
  [[ $updated == yes ]] || apt-get update -qq
  apt-get build-dep -y -qq --no-install-recommends ./ >/dev/null
fi
