# collector_service: fetches paginated HTTP APIs and streams records to the writer (etlctl included).
# Build from the repository root:  docker build -f deploy/collector.Dockerfile -t etl-collector .
# Stage 1 compiles with Debian 12's packages; stage 2 is debian:12-slim with the runtime libraries
# only and runs as an unprivileged user.
FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      cmake g++ make pkg-config \
      libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev grpc-proto \
      libcurl4-openssl-dev libpq-dev libabsl-dev libsimdjson-dev libcpp-httplib-dev libssl-dev zlib1g-dev libyaml-cpp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
 && cmake --build /build -j"$(nproc)" --target collector_server etl_health_probe etlctl \
 && strip /build/bin/*

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libcurl4 libpq5 libsimdjson14 libcpp-httplib0.11 libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin etl
COPY --from=build /build/bin/collector_server /usr/local/bin/collector_server
COPY --from=build /build/bin/etl_health_probe /usr/local/bin/etl_health_probe
COPY --from=build /build/bin/etlctl /usr/local/bin/etlctl
USER 10001:10001
EXPOSE 50051 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["etl_health_probe", "--quiet", "--timeout=2", "127.0.0.1:50051"]
ENTRYPOINT ["collector_server"]
CMD ["--listen=0.0.0.0:50051", "--writer=writer:50052", "--metrics_listen=0.0.0.0:9091"]
