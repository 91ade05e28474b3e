# syntax=docker/dockerfile:1
# etcd-registrar container image.
#   docker build -t etcd-registrar:0.1.0 .
# Stage 1 builds dist/ with the dev dependencies; stage 2 installs only the production
# dependencies; the runtime stage is distroless Node 24: no shell, no package manager,
# non-root (uid/gid 65532), exec-form entrypoint so SIGTERM reaches Node directly.
ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
# --ignore-scripts: the `prepare` script would build before the sources are copied, and the
# `node` devDependency would download a second Node binary; the base image's Node is used.
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
# Same as `npm run build` (tsc -p tsconfig.build.json), without npm putting the not-installed
# `node` devDependency first on PATH.
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

FROM node:${NODE_VERSION}-bookworm-slim AS prod-deps
WORKDIR /src
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts

FROM gcr.io/distroless/nodejs${NODE_VERSION}-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="etcd-registrar" \
      org.opencontainers.image.description="Registers Ready Kubernetes pods in etcd under a lease" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
ENV NODE_ENV=production
# V8 runs tuned for memory over speed: bin/etcd-registrar.js sets --optimize-for-size itself
# (NODE_OPTIONS refuses that flag); ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE=false (chart extraEnv)
# restores Node's defaults. docs/benchmarks.md, "Memory".
COPY --from=prod-deps /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
COPY package.json package-lock.json ./
COPY bin/ bin/
# 65532 = "nonroot" in distroless; the chart's securityContext uses the same ids.
USER 65532:65532
EXPOSE 8080
# Exec form, no shell, no init: Node is PID 1 and receives SIGTERM itself; the controller
# installs SIGTERM/SIGINT handlers (finish in-flight writes, flush logs, exit 0). Zombie
# reaping is not needed: the controller spawns no child processes.
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/etcd-registrar.js"]
CMD ["run"]
