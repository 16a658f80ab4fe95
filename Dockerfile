# vitalmesh for docker-compose.yml. node:20-bookworm has the compiler better-sqlite3 needs.
FROM node:20-bookworm
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY . .
ENV VITALMESH_DATA_DIR=/data
EXPOSE 1883 8080
ENV NODE_OPTIONS=--max-semi-space-size=64
CMD ["node", "--import", "tsx", "main.ts"]
