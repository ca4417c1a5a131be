# One image for every role: `serve` (default), `worker`, `migrate`, `sync`, `catalog import`.
#   docker build -t finops-gql .
#   docker run -e JWT_SECRET=... -e DATABASE_URL=... -p 8000:8000 finops-gql
#   docker run ... finops-gql worker
# BASE is any image with Python 3.11+ and its venv module: the official python:3.11-slim by
# default; scripts/container-check passes one built from Debian's packages (python3, python3-venv).
# Everything goes into the virtualenv /opt/venv, so neither stage depends on the base's own
# pip or `python` name, nor trips over Debian's PEP 668 marker.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
COPY requirements/app.lock requirements/build.lock ./requirements/
# Build tools (the locked setuptools) in a venv of their own, so they stay out of the image; the
# app venv gets no pip at all and every dependency from app.lock, hashes checked.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --quiet --require-hashes -r requirements/build.lock \
    && python3 -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir --quiet \
        --require-hashes --only-binary :all: -r requirements/app.lock
COPY pyproject.toml README.md ./
COPY finops_gql ./finops_gql
# --no-index: the project's own wheel only, so nothing unlocked slips in.
RUN /opt/build/bin/pip wheel --no-cache-dir --quiet --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir --quiet \
        --no-deps --no-index /wheels/finops_gql-*.whl

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DATABASE_URL=sqlite:///data/finops_gql.sqlite3
RUN useradd --create-home --uid 10001 finops \
    && mkdir /data && chown finops /data
COPY --from=build /opt/venv /opt/venv
USER finops
WORKDIR /home/finops
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["finops-gql"]
# Two worker processes (about 100 MB each): the default, the cores the container may use, is
# the host's when no CPU limit is set.
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
