# genserve images; docs/deploy.md explains them. Two targets, same layout:
#   docker build -t genserve:cpu .                   CPU, onnxruntime (the default: last stage)
#   docker build --target cuda -t genserve:cuda .    NVIDIA CUDA 13 + cuDNN 9, onnxruntime-gpu
# Each runtime stage holds a venv with the service's dependencies only (no torch: the `train`
# extra is never installed), modelstore/, service/ and model_store/. No compiler is installed anywhere: every
# dependency ships a wheel, at the version constraints.txt pins. Both run as uid 10001 and serve
# on port 8000.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- CUDA (onnxruntime-gpu 1.31)
FROM ${CUDA_IMAGE} AS cuda-builder
ARG DEBIAN_FRONTEND=noninteractive
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Ubuntu 24.04's own Python (3.12); apt versions follow the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml constraints.txt deploy/docker/requirements.py /build/
# The secret `ca`: see the CPU builder below.
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then \
        { cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null || true; cat /run/secrets/ca; } \
            > /tmp/ca.pem; \
        export PIP_CERT=/tmp/ca.pem; \
    fi \
    && python3 -m venv /opt/venv \
    && python3 /build/requirements.py /build/pyproject.toml cuda > /build/requirements.txt \
    && /opt/venv/bin/pip install -r /build/requirements.txt -c /build/constraints.txt \
    && rm -f /tmp/ca.pem

FROM ${CUDA_IMAGE} AS cuda
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 genserve \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin genserve
WORKDIR /app
COPY --from=cuda-builder /opt/venv /opt/venv
COPY modelstore/ /app/modelstore/
COPY service/ /app/service/
COPY model_store/ /app/model_store/
# SERVICE_DEVICE=cuda: refuse to start without a working GPU instead of quietly using the CPU.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE_MODEL_STORE=/app/model_store \
    SERVICE_DEVICE=cuda
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------- CPU (onnxruntime 1.31)
FROM ${PYTHON_IMAGE} AS cpu-builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml constraints.txt deploy/docker/requirements.py /build/
# Behind a TLS-inspecting proxy, pass its CA as the build secret `ca` (docs/deploy.md):
#   docker build --secret id=ca,src=proxy-ca.pem .   (podman build takes the same flag)
# pip trusts it on top of the base's own CAs. A secret is mounted for this RUN only: it lands in
# no layer, and the runtime stage copies /opt/venv alone (tests/deploy/test_image.py greps the
# final image for the CA's lines).
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then \
        { cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null || true; cat /run/secrets/ca; } \
            > /tmp/ca.pem; \
        export PIP_CERT=/tmp/ca.pem; \
    fi \
    && python -m venv /opt/venv \
    && python /build/requirements.py /build/pyproject.toml cpu > /build/requirements.txt \
    && /opt/venv/bin/pip install -r /build/requirements.txt -c /build/constraints.txt \
    && rm -f /tmp/ca.pem

FROM ${PYTHON_IMAGE} AS cpu
RUN groupadd --system --gid 10001 genserve \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin genserve
WORKDIR /app
COPY --from=cpu-builder /opt/venv /opt/venv
COPY modelstore/ /app/modelstore/
COPY service/ /app/service/
COPY model_store/ /app/model_store/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE_MODEL_STORE=/app/model_store \
    SERVICE_DEVICE=cpu
USER 10001:10001
EXPOSE 8000
# urllib raises on a 503, so the check fails until every model is loaded (slim has no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]
