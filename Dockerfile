# syntax=docker/dockerfile:1
# Lightbox image: wheels built in one stage (the runtime dependencies only, no dev toolchain),
# installed in a slim second stage that runs as a non-root user. compose.yaml uses it; see
# docs/operations.md.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY app ./app
RUN python -m pip wheel --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LIGHTBOX_HOST=0.0.0.0 LIGHTBOX_PORT=8080 LIGHTBOX_DIMSE__HOST=0.0.0.0 LIGHTBOX_DATA_DIR=/data \
    LIGHTBOX_MIGRATIONS_DIR=/srv/lightbox/alembic
# DejaVu Sans: the glyphs burned-in annotations need (accented and non-Latin patient names)
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 lightbox \
    && useradd --system --uid 10001 --gid lightbox --home-dir /srv/lightbox \
       --shell /usr/sbin/nologin lightbox \
    && mkdir -p /data /srv/lightbox && chown lightbox:lightbox /data
COPY --from=build /wheels /wheels
RUN python -m pip install --no-index /wheels/*.whl && rm -rf /wheels
WORKDIR /srv/lightbox
# the migrations, for `lightbox db upgrade` (LIGHTBOX_MIGRATIONS_DIR)
COPY alembic ./alembic
USER lightbox:lightbox
# data_dir: the token signing key (data_dir/auth) and the spool; keep it on a volume
VOLUME ["/data"]
# DICOMweb and the web pages; DIMSE
EXPOSE 8080 11112
# asks the server on the port and scheme of its settings (LIGHTBOX_PORT, LIGHTBOX_SSL_CERTFILE)
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["lightbox", "healthcheck"]
# PostgreSQL: make the schema before the first server starts, and after each upgrade of the
# image, with this image's `lightbox db upgrade` (compose.yaml's one-shot migrate service;
# `docker run --rm --env-file lightbox.env IMAGE lightbox db upgrade`); or set
# LIGHTBOX_AUTO_MIGRATE=true, which makes every replica migrate as it starts (one at a time,
# under a PostgreSQL advisory lock). SQLite (the default) is migrated by `lightbox serve`.
CMD ["lightbox", "serve"]
