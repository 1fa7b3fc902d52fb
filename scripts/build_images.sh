#!/usr/bin/env bash
# Build both image targets locally without a Docker engine (Debian's buildah + runc) and print
# their sizes. For machines that cannot pull from a container registry: the base image is a
# Debian bookworm rootfs (debootstrap) with Debian's own Python, given to the Dockerfile through
# --build-arg PYTHON_IMAGE, and the wheels come from a local wheelhouse downloaded from the lock
# files (pip checks their hashes on download and again in the build). It proves the Dockerfile's
# steps; the published images are built FROM the real python:3.12-slim-bookworm (docs/IMAGES.md).
#
#   scripts/build_images.sh [cpu|cuda ...]     (default: cuda cpu)
#
# Environment: CACHE (work directory, default ~/.cache/biomarker-worker/images),
# TORCH_CPU_INDEX_URL / TORCH_CPU_LOCK (where the cpu image's torch comes from; when
# requirements/torch-cpu.lock has no hashes and its index is unreachable, the cpu image is built
# with the cuda lock's torch as a stand-in, and says so).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/biomarker-worker/images}
BASE=localhost/biomarker-local-base:bookworm
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' worker/__init__.py)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(cuda cpu)
log() { printf 'build_images: %s\n' "$*" >&2; }
mkdir -p "$CACHE"

for tool in buildah runc debootstrap; do
  command -v "$tool" >/dev/null || { log "apt-get install buildah runc debootstrap"; apt-get install -y -q buildah runc debootstrap >/dev/null; break; }
done

# Base image: Debian bookworm minbase + python3 (3.11), python3-venv, `python`.
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  if [[ ! -f $CACHE/rootfs.tar ]]; then
    if [[ ! -x $CACHE/rootfs/usr/bin/python3 ]]; then
      rm -rf "$CACHE/rootfs"
      debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$CACHE/rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log"
    fi
    rm -rf "$CACHE"/rootfs/var/cache/apt/archives/*.deb "$CACHE"/rootfs/var/lib/apt/lists/*
    tar -C "$CACHE/rootfs" -cf "$CACHE/rootfs.tar" .
    rm -rf "$CACHE/rootfs"
  fi
  mkdir -p "$CACHE/base"
  ln -f "$CACHE/rootfs.tar" "$CACHE/base/rootfs.tar"
  printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["python3"]\n' >"$CACHE/base/Containerfile"
  buildah bud --quiet -t "$BASE" -f "$CACHE/base/Containerfile" "$CACHE/base" >/dev/null
fi
base_py=$(buildah run "$(buildah from --pull-never "$BASE")" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
buildah rm --all >/dev/null
log "base $BASE: Python $base_py"

# Wheelhouse for the base's Python, hash-checked by pip on download.
wh=$CACHE/wheelhouse-cp${base_py/./}
mkdir -p "$wh"
platforms=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)  # glibc 2.36: all up to 2_36
for minor in $(seq 5 36); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
  --only-binary=:all: --python-version "$base_py" "${platforms[@]}" \
  -r requirements/cuda-cu132.lock -r requirements/build.lock -d "$wh"

torch_cpu_args=()
if grep -q -- '--hash=sha256:' "${TORCH_CPU_LOCK:-requirements/torch-cpu.lock}"; then
  torch_cpu_args=(--build-arg "TORCH_CPU_LOCK=${TORCH_CPU_LOCK:-requirements/torch-cpu.lock}")
  python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    --python-version "$base_py" "${platforms[@]}" \
    --index-url "${TORCH_CPU_INDEX_URL:-https://download.pytorch.org/whl/cpu}" \
    -r "${TORCH_CPU_LOCK:-requirements/torch-cpu.lock}" -d "$wh"
else
  log "cpu: requirements/torch-cpu.lock has no hashes; STAND-IN: torch from requirements/cuda-cu132.lock (PyPI's CUDA build + nvidia-* wheels)"
  torch_cpu_args=(--build-arg TORCH_CPU_LOCK=requirements/cuda-cu132.lock)
fi

for target in "${targets[@]}"; do
  tag=localhost/biomarker-worker:$VERSION-$target-local
  log "building $tag"
  start=$(date +%s)
  buildah bud --layers --pull-never --target "$target" -t "$tag" \
    --build-arg "PYTHON_IMAGE=$BASE" --build-arg WHEELHOUSE=/wheelhouse \
    --build-arg "REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "${torch_cpu_args[@]}" -v "$wh:/wheelhouse:ro" -f Dockerfile . >"$CACHE/build-$target.log" 2>&1 \
    || { tail -n 30 "$CACHE/build-$target.log" >&2; exit 1; }
  log "$tag built in $(( $(date +%s) - start )) s"
done

# Sizes: the image as stored (buildah images) and unpacked (du of the mounted rootfs), and the
# venv's share of torch and the CUDA-only wheels.
for target in "${targets[@]}"; do
  tag=localhost/biomarker-worker:$VERSION-$target-local
  ctr=$(buildah from --pull-never "$tag")
  mnt=$(buildah mount "$ctr")
  site=$(echo "$mnt"/opt/venv/lib/python3*/site-packages)
  printf '%s\n' "== $tag"
  buildah images --format 'stored: {{.Size}}' "$tag"
  printf 'unpacked: %s\n' "$(du -sxh "$mnt" | cut -f1)"
  printf 'venv: %s\n' "$(du -sxh "$mnt/opt/venv" | cut -f1)"
  printf 'torch: %s; nvidia-*, cuda-*, triton: %s\n' "$(du -sch "$site"/torch | tail -n1 | cut -f1)" \
    "$(du -sch "$site"/nvidia "$site"/cuda* "$site"/triton 2>/dev/null | tail -n1 | cut -f1)"
  printf 'provenance: %s\n' "$(cat "$mnt/opt/venv/torch-provenance.txt")"
  buildah umount "$ctr" >/dev/null
  buildah rm "$ctr" >/dev/null
done
