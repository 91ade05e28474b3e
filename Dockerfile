# syntax=docker/dockerfile:1
# etcd-registrar container image.
#   docker build -t etcd-registrar:0.1.0 .          (or: buildah bud -t etcd-registrar:0.1.0 .)
#   npm run image                                  (no registry needed: builds the two bases
#                                                  from Debian packages first; docs/image.md)
# The build stage compiles dist/, bundles it with its production dependencies into
# tree-shaken modules (scripts/bundle.ts) and writes a CycloneDX SBOM of those dependencies;
# the runtime stage is distroless Node 24: no shell, no package manager, non-root
# (uid/gid 65532), exec-form entrypoint so SIGTERM reaches Node directly.
# The base images are arguments so that locally built equivalents can stand in for them.
ARG BUILD_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
# Behind a TLS-intercepting proxy, the proxy's CA for npm (a file mounted into the build,
# e.g. `buildah bud -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.pem:ro
# --build-arg NODE_EXTRA_CA_CERTS=/etc/ssl/host-ca.pem`; `npm run image` does so when the
# host sets NODE_EXTRA_CA_CERTS). Unset by default: nothing changes.
ARG NODE_EXTRA_CA_CERTS
COPY package.json package-lock.json ./
# --ignore-scripts: the `prepare` script would build before the sources are copied, and the
# `node` devDependency would download a second Node binary; the base image's Node is used.
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
COPY bin/ bin/
COPY scripts/bundle.ts scripts/
# Same as `npm run build` (tsc -p tsconfig.build.json), without npm putting the not-installed
# `node` devDependency first on PATH; then the bundle and the SBOM into /out.
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json \
 && node scripts/bundle.ts /out \
 && npm sbom --omit dev --sbom-format cyclonedx > /out/sbom.cdx.json

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="etcd-registrar" \
      org.opencontainers.image.description="Registers Ready Kubernetes pods in etcd under a lease" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.etcd-registrar.sbom="/app/sbom.cdx.json (CycloneDX, production dependencies)"
WORKDIR /app
ENV NODE_ENV=production
# V8: 4 MB young-generation semi-spaces (--max-semi-space-size=4 on the entrypoint, as in the
# bin's shebang): Node's speed at a lower RSS. ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE=true (chart
# extraEnv) trades CPU and latency for less memory. docs/benchmarks.md, "Memory".
# /app: bin/etcd-registrar.mjs (the bundle's entry) and its chunks, proto/ (read by etcd3 at start), sbom.cdx.json.
COPY --from=build /out/ /app/
# 65532 = "nonroot" in distroless; the chart's securityContext uses the same ids.
USER 65532:65532
EXPOSE 8080
# Exec form, no shell, no init: Node is PID 1 and receives SIGTERM itself; the controller
# installs SIGTERM/SIGINT handlers (finish in-flight writes, flush logs, exit 0). Zombie
# reaping is not needed: the controller spawns no child processes.
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=4", "/app/bin/etcd-registrar.mjs"]
CMD ["run"]
