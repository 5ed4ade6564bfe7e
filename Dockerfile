# syntax=docker/dockerfile:1
# smtp-operator container image: a static musl binary on distroless (no shell, no package manager),
# running as the non-root user 65532.
#   docker build -t smtp-operator:0.1.0 .
# The entrypoint is the binary; the default command is the controller (`smtp-operator run`), so
# `docker run smtp-operator:0.1.0 crd` prints the CRD and `... check -f settings.yaml` runs one check.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
# ring compiles C and assembly for the musl target with musl-gcc
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# the registry and target directories are BuildKit caches: rebuilds only compile what changed
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --target x86_64-unknown-linux-musl --bin smtp-operator \
 && cp target/x86_64-unknown-linux-musl/release/smtp-operator /smtp-operator
# fail the build if the binary is not fully static
RUN ! ldd /smtp-operator 2>/dev/null | grep -q "=>"

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="smtp-operator" \
      org.opencontainers.image.description="Kubernetes operator that manages and verifies outgoing-mail (SMTP) settings" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /smtp-operator /smtp-operator
USER 65532:65532
# /metrics, /healthz, /readyz (--metrics-addr)
EXPOSE 8080
ENTRYPOINT ["/smtp-operator"]
CMD ["run"]
