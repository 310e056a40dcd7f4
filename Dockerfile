# syntax=docker/dockerfile:1
# Build:            docker build -t leakagent .
# With a bundle:    docker build --target bundle --build-arg BUNDLE_DIR=bundle -t leakagent_bundle .
#                   (BUNDLE_DIR, relative to the build context, holds <version>/leaksignal.wasm; it is copied to
#                   /bundle and served under /proxy/ through LS_BUNDLE_DIR=/bundle)
# Check a config:   docker run --rm -v "$PWD/config.yaml:/config.yaml:ro" leakagent validate /config.yaml

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json buf.yaml buf.gen.yaml tsconfig.json ./
COPY proto ./proto
COPY src ./src
RUN npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json ./
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
USER node
EXPOSE 8121 9176
# The CLI runs the agent when given no command, and `leakagent validate` otherwise.
ENTRYPOINT ["node", "dist/app/cli.js"]

FROM runtime AS bundle
ARG BUNDLE_DIR=bundle
# Readable by the unprivileged user whatever the modes in the build context.
COPY --chown=root:root --chmod=0755 ${BUNDLE_DIR} /bundle
ENV LS_BUNDLE_DIR=/bundle

# The plain image is the default target.
FROM runtime
