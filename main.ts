import { loadConfig, createLogger, systemClock, VitalmeshError } from './core/index.ts'
import { createApp } from './app.ts'

/** The only place that reads the environment, creates the root logger and handles signals. */
async function main (): Promise<void> {
  let config
  try {
    config = loadConfig(process.env)
  } catch (e) {
    process.stderr.write(`vitalmesh: ${(e as Error).message}\n`)
    process.exit(2)
  }
  const logger = createLogger({ level: config.log.level, pretty: config.log.pretty ?? process.stdout.isTTY === true })
  const app = await createApp({ config, logger, clock: systemClock })
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'stopping')
    app.stop().then(() => process.exit(0), (err: Error) => { logger.error({ err }, 'stop failed'); process.exit(1) })
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  try {
    await app.start()
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    if (err.code === 'EADDRINUSE') logger.fatal({ err: err.message }, 'a port is already in use: set VITALMESH_MQTT_PORT or VITALMESH_HTTP_PORT')
    else if (e instanceof VitalmeshError) logger.fatal({ code: e.code }, e.message)
    else logger.fatal({ err }, 'start failed')
    process.exit(1)
  }
}

void main()
