# syntax=docker/dockerfile:1
# Lightbox image: build wheels in one stage, run as a non-root user in a slim second stage.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN python -m pip wheel --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LIGHTBOX_HOST=0.0.0.0 LIGHTBOX_PORT=8080 LIGHTBOX_DATA_DIR=/data
RUN groupadd --system lightbox && useradd --system --gid lightbox --home /srv/lightbox lightbox \
    && mkdir -p /data /srv/lightbox && chown lightbox:lightbox /data
COPY --from=build /wheels /wheels
RUN python -m pip install /wheels/*.whl && rm -rf /wheels
WORKDIR /srv/lightbox
# the migrations: app.index.migrate finds ./alembic (or LIGHTBOX_MIGRATIONS_DIR)
COPY alembic ./alembic
USER lightbox
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1
CMD ["lightbox", "serve"]
