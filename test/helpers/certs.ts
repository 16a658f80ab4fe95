import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from './proc.ts'

export interface Pki { dir: string, ca: string, serverCert: string, serverKey: string, client(cn: string, signer?: 'ca' | 'rogue'): { cert: string, key: string } }

const openssl = (args: string[], cwd: string): void => { execFileSync('openssl', args, { cwd, stdio: 'pipe' }) }

/** A throw-away CA with a server certificate for 127.0.0.1/localhost, and client certificates on demand (Debian's openssl). */
export function makePki (): Pki {
  const dir = tempDir('vitalmesh-pki-')
  const ca = (name: string): void => openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`], dir)
  ca('ca')
  ca('rogue')
  const sign = (name: string, cn: string, signer: string, ext?: string): void => {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir)
    const args = ['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.crt`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-days', '2', '-out', `${name}.crt`]
    if (ext) { writeFileSync(join(dir, `${name}.ext`), ext); args.push('-extfile', `${name}.ext`) }
    openssl(args, dir)
  }
  sign('server', 'localhost', 'ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  return {
    dir,
    ca: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    client (cn, signer = 'ca') {
      const name = `client-${signer}-${cn}`
      sign(name, cn, signer, 'extendedKeyUsage=clientAuth\n')
      return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }
    },
  }
}
