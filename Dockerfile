# syntax=docker/dockerfile:1.7
# The medplat image: one static binary (operator, worker, node agent, listener) on distroless.
#
#   docker build -t medplat:dev .
#   docker run --rm medplat:dev --version
#
# Stage 1 builds a fully static binary for x86_64-unknown-linux-musl (rustls with ring, no
# OpenSSL, no glibc), so the runtime image needs no libc at all.
FROM docker.io/library/rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# Keep symbol names (readable backtraces) but no debug info: a small image.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl -p medplat --bin medplat \
 && install -D -m 0555 target/x86_64-unknown-linux-musl/release/medplat /out/medplat

# Stage 2: distroless "static" (CA certificates, /etc/passwd with nonroot, nothing else),
# running as uid/gid 65532 — the user render::pod_security::NONROOT_UID and the chart assume.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/medplat /usr/local/bin/medplat
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/medplat"]
CMD ["run"]
