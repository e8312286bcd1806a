/**
 * Optional native accelerators (`native/<name>`, built at install by node-gyp): loaded once, and
 * only when built for this Node, complete, and not switched off by their environment variable
 * (`NEVERTRUST_NATIVE_<NAME>=0`). Callers keep a JavaScript path with the same answers.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from './package-root.js';

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
  const file = join(packageRoot(), 'native', name, 'build', 'Release', `${name}.node`);
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
