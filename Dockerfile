# Gateway image (also runs the device simulator): production dependencies plus tsx, non-root.
#
# tsx is a run-time dependency here, not a build tool: the gateway runs its TypeScript source
# directly (`node --import tsx src/main.ts`, as `npm start` does), and custom rule handlers
# (config/handlers/*.ts, named in the rules file) are imported as TypeScript while it runs, so
# even a compiled build would still need a TypeScript loader.

# Node 24: the active LTS (Node 20 reached end of life in April 2026; fastify and
# @fastify/swagger-ui now depend on packages that need Node 22 or newer). README, Quick start.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
# better-sqlite3 builds from source when no prebuilt binary matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# tsx is a devDependency in package.json (CI needs it too). In this stage only, it is moved to
# dependencies so that `npm ci --omit=dev` installs it at the lockfile's exact version, with
# its esbuild binary, and nothing else from devDependencies. (`npm install tsx` after
# `npm ci --omit=dev` would reinstall every devDependency: vitest, typescript, biome.)
RUN node -e ' \
    const fs = require("fs"); \
    const pkg = JSON.parse(fs.readFileSync("package.json", "utf8")); \
    pkg.dependencies.tsx = pkg.devDependencies.tsx; \
    delete pkg.devDependencies.tsx; \
    fs.writeFileSync("package.json", JSON.stringify(pkg, null, 2)); \
  ' \
  && npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
# The unmodified package.json (the edited one stays in the deps stage).
COPY package.json ./
COPY src ./src
COPY devices ./devices
COPY config ./config
# Code stays root-owned and read-only to the app; only DATA_DIR is writable. A new named volume
# mounted here starts with this ownership, so the gateway (user node) can write its files.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 1883 8080
# Node's built-in fetch: no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "--import", "tsx", "src/main.ts"]
