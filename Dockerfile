# Model Monitor: the pytest suite that checks OpenAI-compatible endpoints, as a small non-root image.
#   podman build -t model-monitor .            (CI: --build-arg BASE=localhost/debian-py:bookworm)
#   podman run --rm --read-only -v ./endpoints.yaml:/etc/model-monitor/endpoints.yaml:ro model-monitor
# BASE must be Debian bookworm with Python 3.11 (python3 -m venv must work): the official slim image, pinned
# by digest, or the debootstrap image that scripts/install-tools makes where no registry can be reached.
ARG BASE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

FROM ${BASE} AS builder
# Optional, builder stage only: the CA bundle of a TLS-intercepting proxy between pip and the index.
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# binutils, builder stage only: the extension modules (aiohttp, PyYAML, rpds ...) ship with debug symbols, 10 MB of
# the image; strip removes them. Unpinned: the base's own Debian release decides the version.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends binutils && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
# Dependencies first, in their own layer: the versions and file hashes in requirements.lock (./dev lock writes it
# from pyproject.toml, with the otlp extra a base install leaves out), so two builds of one commit install the same; the layer is rebuilt only when the lock changes.
# Bytecode only for the modules that importing each package loads (12 MB less than pip's compile-all, and still
# a fast start on the read-only filesystem, where nothing can be compiled to disk at run time).
COPY requirements.lock /src/requirements.lock
RUN /opt/venv/bin/pip install --no-cache-dir --no-compile --require-hashes -r /src/requirements.lock \
    && find /opt/venv -type d -name tests -path '*/site-packages/*/tests' -prune -exec rm -rf {} + \
    && find /opt/venv -name '*.so' -exec strip --strip-unneeded {} +
# The package itself, not editable and without dependencies (the lock brought them): the model-monitor command and
# the suite it runs. (README.md: the package's long description.) pip check fails the build when the lock does not
# satisfy pyproject.toml's ranges; pip then leaves, with setuptools. Then its bytecode: what importing each package
# loads, and what pytest makes of the package's own modules (it rewrites a plugin's asserts, and keeps the result
# beside the plain bytecode), by collecting a one-model file once: a run on the read-only filesystem compiles nothing.
COPY pyproject.toml README.md /src/
COPY model_monitor /src/model_monitor
RUN /opt/venv/bin/pip install --no-cache-dir --no-compile --no-deps /src \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && PYTHONDONTWRITEBYTECODE='' /opt/venv/bin/python -c 'import importlib, importlib.metadata as md; [importlib.import_module(name) for name in sorted(md.packages_distributions()) if not name.startswith("_")]; import model_monitor.cli, model_monitor.entry, model_monitor.plugin, model_monitor.reporters.otlp' \
    && printf 'endpoints:\n  - name: warm\n    url: http://127.0.0.1:9\n    models: [{name: warm, type: chat}]\n' > /tmp/warm.yaml \
    && PYTHONDONTWRITEBYTECODE='' /opt/venv/bin/model-monitor --endpoints /tmp/warm.yaml --collect-only -q > /dev/null \
    && rm /tmp/warm.yaml

FROM ${BASE}
# 10001: the fixed non-root uid and gid the Helm chart's securityContext uses.
RUN groupadd --gid 10001 monitor \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --home-dir /tmp --shell /usr/sbin/nologin monitor
COPY --from=builder /opt/venv /opt/venv
# Relative paths given to the command (--junitxml=report.xml) land in the one writable place.
WORKDIR /tmp
# Nothing is written outside /tmp: no bytecode, no pytest cache (the command turns it off), HOME in /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_MONITOR_ENDPOINTS=/etc/model-monitor/endpoints.yaml
USER 10001:10001
# Extra arguments (e.g. --only my-service, -m critical, --junitxml=/tmp/report.xml) are appended.
# The exit code is pytest's: 0 every case passed, 1 a case failed, 4 the configuration is wrong.
ENTRYPOINT ["model-monitor"]
