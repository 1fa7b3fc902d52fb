# syntax=docker/dockerfile:1
#
# biomarker-worker images. Two final targets:
#   docker build --target cpu  -t biomarker-worker:0.1.0-cpu  .   (torch from the PyTorch CPU index)
#   docker build --target cuda -t biomarker-worker:0.1.0-cuda .   (torch's default PyPI CUDA build;
#                                                                  the CUDA libraries come as nvidia-*
#                                                                  wheels, the driver from the host)
# The default target (the last stage) is `cpu`. Both run as the numeric user 10001, start
# `biomarker-worker run` and carry the default model pre-materialised in /opt/biomarker/cache.
# The image is the service wheel alone (the `worker` package and its runtime dependencies):
# training (training/, the [train] extra) and the benchmarks (bench/, the [bench,onnx]
# extras) are not in it; they run from a source checkout, `pip install -e '.[train]'` and so on.
#
# Reproducible: every Python package comes from a lock file in requirements/ with its sha256
# (pip --require-hashes --no-deps; refresh with scripts/lock.sh) except, until its lock has
# hashes, torch's CPU build (TORCH_CPU_REQUIRE_HASHES=1 fails instead), the project's wheel is built
# without build isolation from the hashed build backend, and the base image can be pinned by
# digest: --build-arg PYTHON_IMAGE=python:3.12-slim-bookworm@sha256:<digest>. docs/IMAGES.md
# lists the build arguments, the NVIDIA driver each CUDA line needs and the measured sizes.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------------------------------------
# build: a venv and the lock files, shared by the dependency and wheel stages.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies come from the lock files alone, so code changes reuse the (large) layers.
COPY requirements/ ./requirements/

# deps-cpu: everything but torch from requirements/cpu.lock, then torch's CPU build (no
# dependencies of its own: they are in cpu.lock) from the PyTorch CPU index.
# WHEELHOUSE: a directory of wheels (e.g. mounted into the build) to install from instead of
# the indexes, for offline builds; hashes are checked all the same.
FROM build AS deps-cpu
ARG WHEELHOUSE=""
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_CPU_LOCK=requirements/torch-cpu.lock
ARG TORCH_CPU_REQUIRE_HASHES=0
RUN /opt/venv/bin/pip install --require-hashes --no-deps \
        ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} -r requirements/cpu.lock \
    && if grep -q -- '--hash=sha256:' "${TORCH_CPU_LOCK}"; then \
        /opt/venv/bin/pip install --require-hashes --no-deps --index-url "${TORCH_CPU_INDEX_URL}" \
            ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} -r "${TORCH_CPU_LOCK}" \
        && echo "torch: hash-checked against ${TORCH_CPU_LOCK}" >/opt/venv/torch-provenance.txt; \
    elif [ "${TORCH_CPU_REQUIRE_HASHES}" = 1 ]; then \
        echo "${TORCH_CPU_LOCK} has no hashes (run scripts/lock.sh where ${TORCH_CPU_INDEX_URL} is reachable)" >&2; \
        exit 1; \
    else \
        echo "WARNING: ${TORCH_CPU_LOCK} has no hashes: torch is pinned by version only" >&2 \
        && /opt/venv/bin/pip install --no-deps --index-url "${TORCH_CPU_INDEX_URL}" \
            ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} -r "${TORCH_CPU_LOCK}" \
        && echo "torch: pinned by version only (${TORCH_CPU_LOCK}, ${TORCH_CPU_INDEX_URL}), not hash-checked" \
            >/opt/venv/torch-provenance.txt; \
    fi \
    && /opt/venv/bin/pip check

# deps-cuda: torch and its nvidia-* wheels from requirements/cuda-${TORCH_CUDA}.lock. cu132 is
# PyPI's default build (no extra index); another line needs its lock (TORCH_CUDA_LINES=cu128
# scripts/lock.sh) and TORCH_CUDA_INDEX_URL=https://download.pytorch.org/whl/cu128.
FROM build AS deps-cuda
ARG WHEELHOUSE=""
ARG TORCH_CUDA=cu132
ARG TORCH_CUDA_INDEX_URL=""
RUN /opt/venv/bin/pip install --require-hashes --no-deps \
        ${TORCH_CUDA_INDEX_URL:+--extra-index-url "$TORCH_CUDA_INDEX_URL"} \
        ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} -r "requirements/cuda-${TORCH_CUDA}.lock" \
    && echo "torch: hash-checked against requirements/cuda-${TORCH_CUDA}.lock" >/opt/venv/torch-provenance.txt \
    && /opt/venv/bin/pip check

# wheel: the project's own wheel, built without isolation by the hashed build backend
# (requirements/build.lock) in a venv of its own.
FROM build AS wheel
ARG WHEELHOUSE=""
RUN python -m venv /opt/buildenv \
    && /opt/buildenv/bin/pip install --require-hashes --no-deps \
        ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} -r requirements/build.lock
COPY . .
RUN /opt/buildenv/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

FROM deps-cpu AS venv-cpu
COPY --from=wheel /dist /dist
RUN /opt/venv/bin/pip install --no-deps /dist/*.whl

FROM deps-cuda AS venv-cuda
COPY --from=wheel /dist /dist
RUN /opt/venv/bin/pip install --no-deps /dist/*.whl

# ---------------------------------------------------------------------------------------------
# runtime: what both final images share. No compilers, no build files: only the venv is copied in.
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="biomarker-worker" \
      org.opencontainers.image.description="Kafka worker that flags biomarker mentions in clinical-note sentences with a BERT classifier" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: the image never reaches the Hugging Face Hub; models come
# from the image or a mounted path. Override both with 0 to allow hub downloads.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIOMARKER_CACHE_DIR=/opt/biomarker/cache \
    HF_HOME=/opt/biomarker/cache/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    BIOMARKER_METRICS_PORT=9108
RUN groupadd --gid 10001 biomarker \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin biomarker \
    && mkdir -p /opt/biomarker/cache \
    && chown 10001:10001 /opt/biomarker/cache
WORKDIR /opt/biomarker
EXPOSE 9108
ENTRYPOINT ["biomarker-worker"]
CMD ["run"]

# cuda: for nodes with NVIDIA GPUs (the container toolkit mounts the driver).
FROM runtime AS cuda
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
LABEL biomarker-worker.image.flavor="cuda"
COPY --from=venv-cuda /opt/venv /opt/venv
USER 10001:10001
# Fail the build on a broken configuration, then materialise the embedded default model into
# BIOMARKER_CACHE_DIR so pods start without writing it (the Helm chart copies it to its emptyDir).
RUN biomarker-worker config >/dev/null \
    && python -c "from worker.model.default import default_model_dir; default_model_dir()"

# cpu (default target): torch's CPU build, no CUDA libraries.
FROM runtime AS cpu
LABEL biomarker-worker.image.flavor="cpu"
COPY --from=venv-cpu /opt/venv /opt/venv
USER 10001:10001
RUN biomarker-worker config >/dev/null \
    && python -c "from worker.model.default import default_model_dir; default_model_dir()"
