# syntax=docker/dockerfile:1
#
# The GitHub App server in a container:
#
#   docker build --build-arg SOURCE_REVISION="$(git rev-parse HEAD)" -t alloy-sysext-automation .
#   docker run -d --name alloy-sysext -p 3000:3000 -v alloy-sysext-data:/data \
#       --env-file secrets.env alloy-sysext-automation
#
# The build stage compiles the release binary (C code too: liblzma, zstd, SQLite and
# ring's assembly, for which the image's gcc is enough); the runtime stage is Debian slim with CA
# certificates (every GitHub, release download and R2 call is HTTPS), curl for the health
# check, and the binary, run as an unprivileged user with its state on the /data volume.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml, Cargo.lock or
# .cargo/config.toml change, not on every source edit. The dummy targets below stand in for
# src/ while the dependencies compile (build.rs is not copied yet, so it does not run here).
COPY Cargo.toml Cargo.lock ./
COPY .cargo/config.toml .cargo/config.toml
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && echo '' > src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/alloy-sysext-automation* \
        target/release/deps/alloy_sysext_automation-* \
        target/release/deps/liballoy_sysext_automation-* \
        target/release/.fingerprint/alloy-sysext-automation-*

# Then the crate. Besides src/, the build reads migrations/ (sqlx::migrate!), and files
# embedded with include_str! (src/sysext/alloy.service, app-manifest.json): the whole
# context is copied (.dockerignore leaves out target/, data/ and .git).
#
# build.rs embeds the source revision that --version and every image's provenance record
# name. The context has no .git, so the revision comes as a build argument; without one it
# is "unknown". Declared after the dependency layer, so a new revision does not rebuild it.
ARG SOURCE_REVISION=
ENV SOURCE_REVISION=${SOURCE_REVISION}
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && ./target/release/alloy-sysext-automation --version

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 alloy \
    && useradd --system --uid 10001 --gid alloy --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin alloy \
    && mkdir -p /data \
    && chown alloy:alloy /data
COPY --from=build /src/target/release/alloy-sysext-automation /usr/local/bin/alloy-sysext-automation

ENV DATA_DIR=/data \
    PORT=3000 \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 3000
WORKDIR /data
USER alloy:alloy

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT:-3000}/healthz" > /dev/null || exit 1
# serve stops accepting on SIGTERM, gives requests in flight 10 s, and leaves a build at a
# step boundary to resume on the next start: `docker stop`'s default 10 s grace is tight,
# so stop with `docker stop -t 30`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["alloy-sysext-automation"]
CMD ["serve"]
