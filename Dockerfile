# vitalmesh for docker-compose.yml, on the Node LTS that CI tests (scripts/install-node-lts.sh pins the
# same version; Node 20 is end of life). The bookworm image has the compiler better-sqlite3 needs.
ARG NODE_VERSION=24.22.3
FROM node:${NODE_VERSION}-bookworm
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY . .
ENV VITALMESH_DATA_DIR=/data
EXPOSE 1883 8080
ENV NODE_OPTIONS=--max-semi-space-size=64
CMD ["node", "--import", "tsx", "main.ts"]
