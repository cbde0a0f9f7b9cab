# sample_api: deterministic paginated order records for demos and tests.
# Build from the repository root:  docker build -f deploy/sample_api.Dockerfile -t etl-sample_api .
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
 && cmake --build /build -j"$(nproc)" --target sample_api \
 && strip /build/bin/*

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libabsl20220623 libcpp-httplib0.11 libgrpc++1.51 libgrpc29 libprotobuf32 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin etl
COPY --from=build /build/bin/sample_api /usr/local/bin/sample_api
USER 10001:10001
EXPOSE 8080

ENTRYPOINT ["sample_api"]
CMD ["--listen=0.0.0.0:8080", "--records=100000"]
