# One image for every role: `serve` (default), `worker`, `migrate`, `sync`, `catalog import`.
#   docker build -t finops-gql .
#   docker run -e JWT_SECRET=... -e DATABASE_URL=... -p 8000:8000 finops-gql
#   docker run ... finops-gql worker
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements/app.lock requirements/build.in ./requirements/
# The build backend and every dependency at the locked versions, hashes checked.
RUN pip install --no-cache-dir "setuptools>=77" \
    && pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements/app.lock
COPY pyproject.toml README.md ./
COPY finops_gql ./finops_gql
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:///data/finops_gql.sqlite3
RUN useradd --create-home --uid 10001 finops \
    && mkdir /data && chown finops /data
COPY --from=build /wheels /wheels
# --no-index: only the wheels built above, so nothing unlocked slips in.
RUN pip install --no-cache-dir --no-index --find-links /wheels finops-gql && rm -rf /wheels
USER finops
WORKDIR /home/finops
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["finops-gql"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
