import { join } from 'node:path'
import { EmbeddedStore } from '../index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { storeContract } from './store-contract.ts'

storeContract('embedded', async () => new EmbeddedStore(join(tempDir(), 'telemetry.db')))
