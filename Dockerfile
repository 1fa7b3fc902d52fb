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

ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG TORCH_VERSION=2.15.0

# ---------------------------------------------------------------------------------------------
# build: a venv and the dependency list, shared by the dependency and wheel stages.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies are installed from pyproject.toml alone, so code changes reuse the (large) layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >/tmp/requirements.txt

# deps-cpu: torch's CPU-only build first; the other requirements then find torch satisfied.
FROM build AS deps-cpu
ARG TORCH_VERSION
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN /opt/venv/bin/pip install --index-url "${TORCH_CPU_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt

# deps-cuda: torch from PyPI, whose Linux wheels are CUDA builds with nvidia-* wheel dependencies.
FROM build AS deps-cuda
ARG TORCH_VERSION
RUN /opt/venv/bin/pip install "torch==${TORCH_VERSION}" \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt

# wheel: the project's own wheel (hatchling, fetched by pip's isolated build).
FROM build AS wheel
COPY . .
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /dist .

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
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIOMARKER_CACHE_DIR=/opt/biomarker/cache \
    HF_HOME=/opt/biomarker/cache/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1 \
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
