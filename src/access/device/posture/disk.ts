/**
 * Root-filesystem encryption: the device mounted at `/` in `lsblk --json`, and its parents. lsblk
 * nests what is built on a device under it (disk → partition → crypt → lvm), so the path from a top
 * device down to the one mounted at `/` is the stack under the root filesystem. Encrypted when an
 * encrypting `crypt` device (dm-crypt, LUKS; not dm-verity or dm-integrity) is on that path.
 */
import { z } from 'zod';
import type { PostureDisk } from '../../../api/index.js';
import { clip, firstLine, type ProbeOptions, runProbe } from './exec.js';

export const LSBLK_ARGS = ['--json', '-o', 'NAME,TYPE,FSTYPE,MOUNTPOINT,MOUNTPOINTS'] as const;

interface BlockDevice {
  name: string;
  type: string;
  fstype?: string | null;
  /** util-linux < 2.37 */
  mountpoint?: string | null;
  /** util-linux ≥ 2.37: every mount of the device (btrfs subvolumes mount one device many times). */
  mountpoints?: (string | null)[];
  children?: BlockDevice[];
}

const blockDevice: z.ZodType<BlockDevice> = z.lazy(() =>
  z.looseObject({
    name: z.string().max(256),
    type: z.string().max(64),
    fstype: z.string().max(64).nullable().optional(),
    mountpoint: z.string().max(4096).nullable().optional(),
    mountpoints: z.array(z.string().max(4096).nullable()).max(1024).optional(),
    children: z.array(blockDevice).max(1024).optional(),
  }),
);
const lsblkOutput = z.looseObject({ blockdevices: z.array(blockDevice).max(4096) });

const MAX_DEPTH = 32;

/** How deep `children` arrays nest under `blockdevices` (iteratively; stops counting past MAX_DEPTH). */
function childDepth(raw: unknown): number {
  const devices = (v: unknown): unknown[] => {
    const list = typeof v === 'object' && v !== null ? (v as { children?: unknown }).children : undefined;
    return Array.isArray(list) ? list : [];
  };
  const top = typeof raw === 'object' && raw !== null ? (raw as { blockdevices?: unknown }).blockdevices : undefined;
  let level: unknown[] = Array.isArray(top) ? top : [];
  let depth = 0;
  while (level.length > 0 && depth <= MAX_DEPTH) {
    depth++;
    level = level.flatMap(devices);
  }
  return depth;
}

const mountsRoot = (d: BlockDevice): boolean => d.mountpoint === '/' || (d.mountpoints ?? []).includes('/');

/** Every path (top device first) that ends at a device mounted at `/`. */
function rootPaths(devices: BlockDevice[], above: BlockDevice[] = [], depth = 0): BlockDevice[][] {
  if (depth > MAX_DEPTH) return [];
  const found: BlockDevice[][] = [];
  for (const d of devices) {
    const path = [...above, d];
    if (mountsRoot(d)) found.push(path);
    found.push(...rootPaths(d.children ?? [], path, depth + 1));
  }
  return found;
}

/**
 * The on-disk signatures under a `crypt` device that mean it encrypts: LUKS, BitLocker, or none at
 * all (plain dm-crypt, a detached LUKS header, TrueCrypt/VeraCrypt). lsblk names every device whose
 * device-mapper UUID starts `CRYPT-` "crypt", and cryptsetup also gives that prefix to dm-verity
 * (`CRYPT-VERITY-`: the parent holds a file system or `DM_verity_hash`) and standalone dm-integrity
 * (`CRYPT-INTEGRITY-`: the parent is `DM_integrity`), which check blocks but encrypt nothing.
 */
const ENCRYPTING_PARENT = new Set(['crypto_LUKS', 'BitLocker']);

/** Whether `path[i]` is an encrypting dm-crypt device (see {@link ENCRYPTING_PARENT}). */
function encrypts(d: BlockDevice, i: number, path: BlockDevice[]): boolean {
  if (d.type !== 'crypt') return false;
  const parent = i > 0 ? path[i - 1] : undefined;
  const sig = parent?.fstype;
  return sig === undefined || sig === null || ENCRYPTING_PARENT.has(sig);
}

const describe = (path: BlockDevice[]): string =>
  path.map((d) => `${d.name} (${d.type}${d.fstype ? ` ${d.fstype}` : ''})`).join(' > ');

/**
 * Decides from `lsblk --json -o NAME,TYPE,FSTYPE,MOUNTPOINT,MOUNTPOINTS` output. Never throws: odd or
 * truncated output, or a `/` lsblk does not list (container, overlay, ZFS, network root), is unknown.
 *
 * @example
 * ```ts
 * parseLsblk(json).root_encrypted; // true | false | null
 * ```
 */
export function parseLsblk(json: string): PostureDisk {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    return { root_encrypted: null, detail: clip(`lsblk output is not JSON (${(e as Error).message})`) };
  }
  // Checked without recursion before zod's recursive schema walks it: a hostile nesting must not
  // overflow the stack. Real stacks are a handful deep (disk > part > crypt > lvm).
  if (childDepth(raw) > MAX_DEPTH) return { root_encrypted: null, detail: `lsblk JSON nests deeper than ${MAX_DEPTH}` };
  const parsed = lsblkOutput.safeParse(raw);
  if (!parsed.success) return { root_encrypted: null, detail: 'lsblk JSON has an unexpected shape' };
  const paths = rootPaths(parsed.data.blockdevices);
  if (paths.length === 0)
    return {
      root_encrypted: null,
      detail: '/ is not on a block device lsblk lists (a container, overlay, ZFS or network root?)',
    };
  // A root on several devices (RAID, multipath) is encrypted only when every leg is.
  const clear = paths.find((p) => !p.some(encrypts));
  if (clear) return { root_encrypted: false, detail: clip(`not encrypted: ${describe(clear)} is mounted at /`) };
  return { root_encrypted: true, detail: clip(`encrypted: ${describe(paths[0] as BlockDevice[])} is mounted at /`) };
}

export async function collectDisk(opts: ProbeOptions = {}): Promise<PostureDisk> {
  const probe = { timeoutMs: 10_000, maxBytes: 1024 * 1024, ...opts };
  let r = await runProbe('lsblk', LSBLK_ARGS, probe);
  // util-linux before 2.37 has no MOUNTPOINTS column and refuses the whole list.
  if (r.kind === 'exited' && r.code !== 0 && /unknown column/i.test(r.stderr))
    r = await runProbe('lsblk', ['--json', '-o', 'NAME,TYPE,FSTYPE,MOUNTPOINT'], probe);
  if (r.kind !== 'exited') return { root_encrypted: null, detail: clip(r.reason) };
  if (r.code !== 0) return { root_encrypted: null, detail: clip(`lsblk exited ${r.code}: ${firstLine(r.stderr)}`) };
  return parseLsblk(r.stdout);
}
