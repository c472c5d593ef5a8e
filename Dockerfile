# Multi-stage build of the `bfs` command: build with the full toolchain, run on a slim image as
# a non-root user. One image serves every role (init, replica, relay, serve).
FROM node:20-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json lerna.json tsconfig.json tsconfig.base.json ./
COPY packages ./packages
RUN npm ci \
 && npm run build \
 && npm prune --omit=dev \
 && rm -rf packages/*/test packages/*/bench packages/*/src

FROM node:20-bookworm-slim
RUN groupadd --system --gid 10001 bfs \
 && useradd --system --uid 10001 --gid bfs --home-dir /home/bfs --create-home bfs \
 && mkdir -p /cluster /data && chown bfs:bfs /cluster /data
WORKDIR /app
COPY --from=build --chown=bfs:bfs /src/package.json ./
COPY --from=build --chown=bfs:bfs /src/node_modules ./node_modules
COPY --from=build --chown=bfs:bfs /src/packages ./packages
USER bfs
ENTRYPOINT ["node", "/app/packages/bfs/dist/cli.js"]
CMD ["--help"]
