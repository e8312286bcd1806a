/**
 * alice's managed device in the local mesh (`nevertrust up`, issue #22): this machine, enrolled
 * through the real path — a one-time token from the server's admin API, `enrollDevice` with the
 * pinned token (a new P-256 key, a CSR, the certificate), then this machine's real posture,
 * collected and signed by the device key, sent over mTLS by the device daemon (which also renews the
 * certificate at half-life). Its state directory is `<data-dir>/people/device`; an enrollment that
 * is still good is kept across starts, else the machine is enrolled anew under a new id (a revoked
 * id is never enrolled again).
 */
import { X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import {
  collectDeviceReport,
  defaultDeviceId,
  enrollDevice,
  renewDevice,
  sendDeviceReport,
} from '../access/device/client.js';
import { runDeviceDaemon } from '../access/device/daemon.js';
import { DeviceState } from '../access/device/state.js';
import { serialText } from '../spiffe/index.js';
import { deviceTokenSchema } from '../api/devices.js';
import { parseWire } from '../api/parse.js';
import { readAdminToken } from '../server/admin-auth.js';
import type { Store } from '../store/index.js';
import type { Logger } from '../util/logger.js';

/** Posture is sent this often (the proxy's default `max_posture_age` is 15 minutes): a full collection takes seconds. */
const REPORT_INTERVAL_MS = 5 * 60_000;
/** The enrollment token's lifetime: it is used at once. */
const TOKEN_TTL = '10m';

export interface MeshDeviceOptions {
  /** The server's API port (`http://host:port`): the admin API makes the enrollment token. */
  apiUrl: string;
  /** The agent port (`https://host:port`): enrollment, renewal and reports go there. */
  agentUrl: string;
  /** The server's data dir (its `admin.token`). */
  dataDir: string;
  /** The device's state directory. */
  dir: string;
  trustDomain: string;
  owner: string;
  store: Store;
  logger: Logger;
}

/** The enrollment in `state` is still usable: the server knows it, not revoked, this certificate current and valid for a minute. */
async function stillGood(state: DeviceState, o: MeshDeviceOptions): Promise<string | undefined> {
  if (!(await state.enrolled().catch(() => false))) return undefined;
  try {
    const info = await state.readInfo();
    if (info.trust_domain !== o.trustDomain || info.owner !== o.owner) return undefined;
    const record = await o.store.devices.get(info.device_id);
    const leaf = new X509Certificate(await state.readCertChain());
    if (!record || record.revokedAt !== null) return undefined;
    if (serialText(record.certSerial) !== serialText(leaf.serialNumber)) return undefined;
    if (new Date(leaf.validTo).getTime() < Date.now() + 60_000) return undefined;
    // The agent port may be another one this start (`--agent-port 0`): the device follows it.
    if (info.server !== o.agentUrl) {
      await state.save({
        certChain: await state.readCertChain(),
        bundle: await state.readBundle(),
        info: { ...info, server: o.agentUrl },
      });
    }
    return info.device_id;
  } catch {
    return undefined;
  }
}

/** This host's device id, or the first `<id>-N` the server has never had (a revoked id stays taken). */
async function freshId(store: Store): Promise<string> {
  const base = defaultDeviceId().slice(0, 58);
  for (let n = 1; n < 1000; n++) {
    const id = n === 1 ? base : `${base}-${n}`;
    if (!(await store.devices.get(id))) return id;
  }
  throw new Error(`no free device id like ${base}-N`);
}

/** A one-time enrollment token for `owner` and `deviceId`, from the admin API, as `nevertrust device token create` gets it. */
async function enrollmentToken(o: MeshDeviceOptions, deviceId: string): Promise<string> {
  const admin = readAdminToken(o.dataDir);
  if (!admin) throw new Error(`no admin token in ${o.dataDir} to create a device enrollment token`);
  const res = await fetch(`${o.apiUrl}/v1/admin/devices/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ owner: o.owner, device_id: deviceId, ttl: TOKEN_TTL }),
    signal: AbortSignal.timeout(15_000),
  });
  const body: unknown = await res.json().catch(() => undefined);
  if (!res.ok) throw new Error(`the admin API refused a device token (${res.status}): ${JSON.stringify(body)}`);
  return parseWire(deviceTokenSchema, body, 'the device token answer').token;
}

/**
 * The mesh's managed device. `credentials()` is what alice's client presents; `onRenewed` is told
 * when the certificate changed (the old one is refused from then on); `reported` settles on the
 * first posture the server kept.
 *
 * @example
 * ```ts
 * const device = await MeshDevice.start({ apiUrl, agentUrl, dataDir, dir, trustDomain, owner: 'alice', store, logger });
 * const alice = new PersonClient({ ca, ...(await device.credentials()) });
 * ```
 */
export class MeshDevice {
  onRenewed: () => Promise<void> = async () => {};
  private readonly stopper = new AbortController();
  private daemon: Promise<void> = Promise.resolve();
  private firstReport!: Promise<void>;

  private constructor(
    readonly id: string,
    readonly owner: string,
    private readonly state: DeviceState,
  ) {}

  static async start(o: MeshDeviceOptions): Promise<MeshDevice> {
    const state = new DeviceState(o.dir);
    let id = await stillGood(state, o);
    if (id === undefined) {
      rmSync(o.dir, { recursive: true, force: true });
      id = await freshId(o.store);
      const token = await enrollmentToken(o, id);
      await enrollDevice(state, { server: o.agentUrl, token, deviceId: id, name: 'this machine (nevertrust up)' });
    }
    const device = new MeshDevice(id, o.owner, state);
    let reported: () => void = () => {};
    device.firstReport = new Promise<void>((r) => {
      reported = r;
    });
    // The device daemon: this machine's real posture, collected (seconds: apt is asked too) and
    // sent every 5 minutes; the certificate renewed at half its life.
    device.daemon = runDeviceDaemon({
      state,
      signal: device.stopper.signal,
      intervalMs: REPORT_INTERVAL_MS,
      checkMs: REPORT_INTERVAL_MS,
      log: (line) => o.logger.info({ device: id }, `device daemon: ${line}`),
      ops: {
        collect: () => collectDeviceReport(state),
        send: async (report) => {
          const kept = await sendDeviceReport(state, report);
          reported();
          return kept;
        },
        renew: async () => {
          const renewed = await renewDevice(state);
          await device.onRenewed();
          return new Date(renewed.renew_after).getTime();
        },
      },
    });
    return device;
  }

  /** The device certificate chain and key (PEM), for a TLS client. */
  async credentials(): Promise<{ cert: string; key: string }> {
    const [cert, key] = await Promise.all([this.state.readCertChain(), this.state.readKeyPem()]);
    return { cert, key };
  }

  /** Resolves once the server kept a first posture, or after `timeoutMs` (a step then fails, saying so). */
  reported(timeoutMs: number): Promise<void> {
    return Promise.race([this.firstReport, new Promise<void>((r) => setTimeout(r, timeoutMs).unref())]);
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.daemon;
  }
}
