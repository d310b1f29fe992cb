# syntax=docker/dockerfile:1
#
# The spacegate webhook image the Helm chart (charts/spacegate) runs.
#
#   docker build -t spacegate/spacegate:0.1.0 .
#
# Two stages: the build stage installs the project and its dependencies into a virtualenv;
# the final stage copies only that virtualenv onto a clean slim Python, so no compiler,
# pip cache, source tree or build dependency ships in the image. Pin PYTHON_IMAGE by digest
# in release builds so a rebuilt base cannot change the image silently.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# The same path in both stages: a virtualenv's scripts carry absolute shebangs.
RUN python -m venv /opt/spacegate
WORKDIR /src
# Only what `pip install .` needs (pyproject.toml names README.md as the long description).
COPY pyproject.toml README.md ./
COPY policy ./policy
COPY webhook ./webhook
COPY certs ./certs
# webhook/demo.yaml (the embedded demo config) is a symlink to examples/demo.yaml.
COPY examples/demo.yaml ./examples/demo.yaml
# Every dependency ships binary wheels for amd64 and arm64, so nothing is compiled here.
# pip and setuptools are removed from the virtualenv afterwards: the running server has no
# use for an installer.
RUN /opt/spacegate/bin/pip install . \
 && /opt/spacegate/bin/python -m compileall -q /opt/spacegate/lib \
 && /opt/spacegate/bin/pip uninstall -y pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="spacegate" \
      org.opencontainers.image.description="Kubernetes admission webhook enforcing registry-space visibility per workspace" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base image's own installer is not needed at run time either.
RUN python -m pip uninstall -y pip setuptools wheel
COPY --from=build /opt/spacegate /opt/spacegate
# Bytecode is precompiled above; the root filesystem is read-only in the chart, so Python
# must not try to write .pyc files. Unbuffered output keeps log lines whole and in order.
ENV PATH=/opt/spacegate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user (and group) that exists in no base image's /etc/passwd, so the
# kubelet can verify runAsNonRoot without a name lookup. The chart's podSecurityContext
# uses the same id.
USER 65532:65532
EXPOSE 8443 8444
ENTRYPOINT ["spacegate", "serve"]
# The chart passes these same arguments; they make `docker run` behave like the pod given
# a config file and a cert dir (tls.crt, tls.key, ca.crt) mounted at /etc/spacegate. The
# server binds 127.0.0.1 unless told otherwise, which is unreachable from outside the container.
CMD ["--config", "/etc/spacegate/config.yaml", "--cert-dir", "/etc/spacegate/tls", "--port", "8443", "--host", "0.0.0.0", "--metrics-auth", "on", "--selector-port", "8444"]
