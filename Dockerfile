# Emergence: one static-ish binary serving HTTP, WebSocket and the web UI.
#
#   docker build -t emergence .
#   docker run -p 8080:8080 -v emergence-data:/data emergence
#
# Stages: web (Vite build of web/) -> build (cargo, with the built UI embedded)
# -> runtime (debian slim, non-root). scripts/check-deploy.sh checks the
# ENTRYPOINT/CMD pair below.

# --- web: the browser UI -------------------------------------------------------
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# --- build: the server binary --------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=web /src/web/dist ./web/dist
# web/dist is already built: build.rs must not run npm.
ENV EMERGENCE_WEB_PREBUILT=1
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/emergence /out/emergence

# --- runtime -------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 emergence \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin emergence \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /out/emergence /usr/local/bin/emergence

# SQLite by default (single instance); on Cloud Run DATABASE_URL comes from
# Secret Manager and points at PostgreSQL (deploy/cloudrun/service.yaml).
ENV PORT=8080 \
    DATABASE_URL=sqlite:///data/emergence.db
VOLUME ["/data"]
WORKDIR /data
EXPOSE 8080
USER 10001

# Cloud Run / Kubernetes probe /readyz and /healthz themselves.
HEALTHCHECK NONE
ENTRYPOINT ["emergence"]
CMD ["serve"]
