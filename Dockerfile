# syntax=docker/dockerfile:1
#
# tracehouse image: one image, four commands (run | worker | api | migrate).
#   docker build -t tracehouse .
#   docker run --rm tracehouse --help
# docker-compose.yml runs it as `migrate`, `worker` and `api` against Kafka and
# a ClickHouse server; see docs/production.md.

# Debian release pinned so builds are reproducible (same glibc as the dev machines).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

# A compiler, for dependencies without a wheel for the target platform
# (faust-streaming ships x86_64 wheels only; arm64 builds it from source).
# Only /opt/venv leaves this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a source change does
# not reinstall them (chdb-core and pyarrow are large).
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb')).get('project', {}).get('dependencies', [])))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# Then the project itself (non-editable: the runtime image has no source tree).
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
 && tracehouse --help > /dev/null

# -------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRACEHOUSE_HTTP_HOST=0.0.0.0 \
    TRACEHOUSE_HTTP_PORT=8080 \
    TRACEHOUSE_DATA_DIR=/var/lib/tracehouse

# Unprivileged user with a fixed uid/gid (numeric, so runAsNonRoot can check it).
# The data dir is created here, owned by that user, so a volume mounted on it
# starts out writable.
RUN groupadd --system --gid 10001 tracehouse \
 && useradd --system --uid 10001 --gid tracehouse \
        --home-dir /var/lib/tracehouse --no-create-home --shell /usr/sbin/nologin tracehouse \
 && install -d -o tracehouse -g tracehouse -m 0750 /var/lib/tracehouse

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /var/lib/tracehouse
EXPOSE 8080

ENTRYPOINT ["tracehouse"]
# Default: the all-in-one embedded mode (embedded broker + chdb in this
# container). The compose file overrides it with migrate / worker / api.
CMD ["run"]
