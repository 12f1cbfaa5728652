# orderd container image (docs/operations.md, "Containers").
#
#   docker build -t orderd .
#   docker run -d --name orderd -p 3000:3000 --env-file orderd.env \
#     -v orderd-data:/var/lib/orderd orderd
#   docker stop -t 30 orderd        # SIGTERM drains for up to 10 s
#
# Stage 1 builds and tests exactly as CI does (.ci/install-deps, make build,
# make test), with the /usr prefix so the compiled-in paths (/etc/orderd,
# /usr/lib/<triplet>/orderd/modules) are those of the final image.
# Stage 2 is debian:12-slim with the runtime libraries only, running as the
# unprivileged user orderd (uid/gid 10001).

FROM debian:12 AS build
WORKDIR /src
COPY . .
ENV CMAKE_FLAGS=-DCMAKE_INSTALL_PREFIX=/usr
RUN bash .ci/install-deps \
 && make build \
 && make test
# Install into a staging root; keep only what the server needs. In a
# container orderd must listen on all interfaces (publish the port to
# choose who reaches it); everything else is the shipped configuration.
RUN DESTDIR=/staging cmake --install build \
 && rm -rf /staging/usr/include /staging/usr/lib/*/pkgconfig /staging/usr/share \
 && sed -i 's/^\( *listen = \)"127\.0\.0\.1:3000";/\1"0.0.0.0:3000";/' /staging/etc/orderd/orderd.conf \
 && grep -q 'listen = "0.0.0.0:3000";' /staging/etc/orderd/orderd.conf

FROM debian:12-slim
# The shared libraries orderd and its modules link (the orderd .deb's
# Depends), plus curl for the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libargon2-1 libcivetweb1 libconfig9 libcurl4 libjson-c5 libjwt0 libsqlite3-0 libssl3 \
      curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 orderd \
 && useradd --system --uid 10001 --gid orderd --home-dir /var/lib/orderd \
      --shell /usr/sbin/nologin orderd \
 && install -d -o orderd -g orderd -m 0750 /var/lib/orderd
COPY --from=build /staging/ /
# Fail the image build, not the first start, if a library is missing.
RUN ! ldd /usr/bin/orderd /usr/lib/*/orderd/modules/*.so | grep 'not found' \
 && /usr/bin/orderd --version

# Configuration: mount your own /etc/orderd (read-only is fine) and pass
# secrets as environment variables: JWT_SECRET (required, >= 32 bytes),
# ORDERD_ADMIN_EMAIL, ORDERD_ADMIN_PASSWORD, PORT, ORDERD_LOG_LEVEL.
# State: the SQLite database in /var/lib/orderd (a volume).
VOLUME ["/var/lib/orderd"]
WORKDIR /var/lib/orderd
USER 10001:10001
EXPOSE 3000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT:-3000}/health" || exit 1
ENTRYPOINT ["/usr/bin/orderd"]
CMD ["-c", "/etc/orderd/orderd.conf"]
