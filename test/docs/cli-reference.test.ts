import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLI_DOC_PATH, renderCliDoc } from '../../scripts/gen-cli-docs.js';

describe('docs/cli.md', () => {
  it('is generated from the current command definitions', () => {
    const current = readFileSync(CLI_DOC_PATH, 'utf8');
    const fresh = renderCliDoc();
    // On failure: run `npx tsx scripts/gen-cli-docs.ts` and commit docs/cli.md.
    expect(current === fresh, 'docs/cli.md is out of date: run `npx tsx scripts/gen-cli-docs.ts`').toBe(true);
  });

  it('documents every command and subcommand', () => {
    const text = renderCliDoc();
    for (const name of [
      'nevertrust server',
      'nevertrust entry create',
      'nevertrust policy export',
      'nevertrust audit verify',
    ])
      expect(text).toContain(`## \`${name}\``);
  });
});
