# Two stages: build with the Rust toolchain, run on a slim Debian with only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin switchboard

FROM debian:bookworm-slim
RUN useradd --system --home /data switchboard && mkdir -p /data && chown switchboard /data
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
USER switchboard
# Two malloc arenas instead of glibc's eight per core: about half the memory per idle
# WebSocket session (BENCHMARKS.md, "Memory per idle session").
ENV MALLOC_ARENA_MAX=2
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/switchboard"]
