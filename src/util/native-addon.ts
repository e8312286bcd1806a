/**
 * The native addons (`native/<name>`, built at install by node-gyp). Optional accelerators are loaded
 * once, and only when built for this Node, complete, and not switched off by their environment
 * variable (`NEVERTRUST_NATIVE_<NAME>=0`); callers keep a JavaScript path with the same answers.
 * A required addon (peercred) that is missing is a {@link NativeAddonMissingError}: one line that
 * says what to build. `NEVERTRUST_NATIVE_DIR` moves the lookup (default `<package>/native`).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { NevertrustError } from '../errors.js';
import { packageRoot } from './package-root.js';

/** A required native addon is not built (e.g. after `npm install --ignore-scripts`) or does not load. */
export class NativeAddonMissingError extends NevertrustError<'ERR_NATIVE_ADDON_MISSING'> {
  override readonly name = 'NativeAddonMissingError';
  readonly code = 'ERR_NATIVE_ADDON_MISSING';
  constructor(
    readonly addon: string,
    detail?: string,
  ) {
    super(
      `native addon native/${addon} is not built${detail ? ` (${detail})` : ''}: run \`npm rebuild\` or ` +
        `\`npx node-gyp rebuild --directory native/${addon}\` (needs python3, make and g++)`,
      { status: 500 },
    );
  }
}

/** Where `native/<name>/build/<kind>/<name>.node` is looked for. */
export function nativeAddonFile(name: string, kind: 'Release' | 'Debug' = 'Release'): string {
  const dir = process.env.NEVERTRUST_NATIVE_DIR || join(packageRoot(), 'native');
  return join(dir, name, 'build', kind, `${name}.node`);
}

const cache = new Map<string, unknown>();

/**
 * The addon `native/<name>` (node-gyp's Release build) if it exports every function in
 * `functions` and `NEVERTRUST_NATIVE_<NAME>` is not `0`, else undefined. Cheap after the first call.
 *
 * @example
 * const merkle = optionalNativeAddon<{ append: NativeMerkleAppend }>('merkle', ['append']);
 */
export function optionalNativeAddon<T extends object>(
  name: string,
  functions: readonly (keyof T & string)[],
): T | undefined {
  if (process.env[`NEVERTRUST_NATIVE_${name.toUpperCase()}`] === '0') return undefined;
  if (cache.has(name)) return (cache.get(name) as T | null) ?? undefined;
  const file = nativeAddonFile(name);
  let loaded: T | null = null;
  if (existsSync(file)) {
    try {
      const a = createRequire(import.meta.url)(file) as Record<string, unknown>;
      if (functions.every((f) => typeof a[f] === 'function')) loaded = a as T;
    } catch {
      // Built for another Node ABI, or not loadable here: the JavaScript path serves.
    }
  }
  cache.set(name, loaded);
  return loaded ?? undefined;
}
