# Two stages: build with the Rust toolchain, run on a slim Debian with the binary and CA roots.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin switchboard

FROM debian:bookworm-slim
# CA roots for https upstreams (models file `url`, ASSISTANT_URL, IMAGE_URL): reqwest verifies with
# rustls-platform-verifier, which reads the system's roots, and refuses to build a client at all
# when there are none.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home /data switchboard && mkdir -p /data && chown switchboard /data
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
USER switchboard
# Two malloc arenas instead of glibc's eight per core: about half the memory per idle
# WebSocket session (BENCHMARKS.md, "Memory per idle session").
ENV MALLOC_ARENA_MAX=2
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/switchboard"]
