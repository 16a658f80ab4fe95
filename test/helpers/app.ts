import { loadConfig, silentLogger, systemClock, type Clock } from '../../core/index.ts'
import { createApp, type App } from '../../app.ts'
import { tempDir } from './proc.ts'

export interface TestApp { app: App, mqttPort: number, httpPort: number, dataDir: string, stop(): Promise<void> }

/** An in-process vitalmesh on free ports in a temporary directory. */
export async function startTestApp (overrides: Record<string, unknown> = {}, clock: Clock = systemClock): Promise<TestApp> {
  const dataDir = tempDir()
  const config = loadConfig({}, { dataDir, 'mqtt.port': 0, 'http.port': 0, 'mqtt.host': '127.0.0.1', 'http.host': '127.0.0.1', ...overrides })
  const app = await createApp({ config, logger: silentLogger(), clock })
  const { mqttPort, httpPort } = await app.start()
  return { app, mqttPort, httpPort, dataDir, stop: () => app.stop() }
}
