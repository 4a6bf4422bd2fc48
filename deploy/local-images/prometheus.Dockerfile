# Prometheus from Debian's package, for where prom/prometheus cannot be pulled (no registry),
# run as the official image runs: user nobody (65534), data in /prometheus, the same flags.
#   podman build -f deploy/local-images/prometheus.Dockerfile \
#       --build-arg BASE_IMAGE=<a Debian bookworm image> -t localhost/genserve-prometheus:debian \
#       deploy/local-images
# compose.override.yml puts it in place of prom/prometheus (docs/deploy.md).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
# Debian's prometheus follows the base's bookworm.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
