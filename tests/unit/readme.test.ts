import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { CONFIG_VARIABLES } from '../../lib/config.js';

describe('README', () => {
  const readme = readFileSync('README.md', 'utf8');

  it('documents every configuration variable', () => {
    const table = readme.slice(readme.indexOf('## Configuration'));
    expect(CONFIG_VARIABLES.filter((name) => !table.includes(`\`${name}\``))).toEqual([]);
  });

  it('gives the two commands CI and users rely on', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
    expect(readFileSync('.ci/run', 'utf8')).toMatch(/^npm test$/m);
  });
});
