#!/bin/sh
# Prints the build version of the source tree SRC from git: `git describe` when a tag is
# reachable (0.1.0-12-g1543c72), else PROJECT_VERSION+gHASH; "-dirty" when files changed.
# Fails without git or outside a git tree: meson's vcs_tag then uses the project version.
# Usage: build-version.sh SRC PROJECT_VERSION
set -e
src=$1 version=$2
git -C "$src" rev-parse --git-dir >/dev/null 2>&1 || exit 1
if described=$(git -C "$src" describe --tags --dirty 2>/dev/null); then
  echo "$described"
else
  dirty=$(git -C "$src" diff --quiet HEAD -- 2>/dev/null || echo -dirty)
  echo "$version+g$(git -C "$src" rev-parse --short HEAD)$dirty"
fi
