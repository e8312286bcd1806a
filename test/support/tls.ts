import { spawn } from 'node:child_process';

/**
 * The CA names a TLS server's CertificateRequest lists, as OpenSSL's client prints them; '' when
 * none. `args`: more `openssl s_client` options (`-servername`, `-CAfile`…).
 */
export async function acceptableCaNames(port: number, args: readonly string[] = []): Promise<string> {
  // Not spawnSync: the server under test answers from this process's event loop.
  const out = await new Promise<string>((res, rej) => {
    const c = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args]);
    let text = '';
    c.stdout.on('data', (d: Buffer) => {
      text += d.toString();
    });
    c.on('error', rej);
    c.on('close', () => res(text));
    c.stdin.end();
  });
  const at = out.indexOf('Acceptable client certificate CA names');
  return at < 0 ? '' : out.slice(at, out.indexOf('---', at));
}
