import { pino, type Logger, type LoggerOptions } from 'pino'

export type { Logger }

export interface LoggerSettings {
  level: string
  /** pretty output for humans at a terminal; JSON otherwise */
  pretty: boolean
}

const redact = ['password', 'secret', 'token', 'apiKey', 'authorization', 'req.headers.authorization', '*.password', '*.secret', '*.token']

export function createLogger (settings: LoggerSettings, destination?: NodeJS.WritableStream): Logger {
  const options: LoggerOptions = { level: settings.level, redact, base: { app: 'vitalmesh' } }
  if (settings.pretty && destination === undefined) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,app' } } })
  }
  return destination ? pino(options, destination as never) : pino(options)
}

/** A logger that drops everything, for unit tests. */
export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}
