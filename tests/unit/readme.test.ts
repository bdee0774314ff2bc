import { readFileSync } from 'node:fs';
import { register } from 'prom-client';
import { describe, expect, it } from 'vitest';

import { CONFIG_VARIABLES } from '../../lib/config.js';

import '../../lib/metrics.js';

/** The text of a Markdown file from one `## ` heading to the next. */
function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`no "${heading}" section`);
  const end = markdown.indexOf('\n## ', start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

describe('README', () => {
  const readme = readFileSync('README.md', 'utf8');

  it('sends readers to the configuration reference, naming only variables the configuration reads', () => {
    const configuration = section(readme, '## Configuration');
    expect(configuration).toContain('](docs/configuration.md)');
    const named = [...configuration.matchAll(/`([A-Z][A-Z0-9_]+)(?:=[^`]*)?`/g)].map((m) => m[1] ?? '');
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((name) => !CONFIG_VARIABLES.includes(name))).toEqual([]);
  });

  it('gives the two commands CI and users rely on', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
    expect(readFileSync('.ci/run', 'utf8')).toMatch(/^npm test$/m);
  });
});

describe('docs/operations.md', () => {
  it('lists every metric lib/metrics.ts declares', () => {
    const operations = readFileSync('docs/operations.md', 'utf8');
    const names = register.getMetricsAsArray().map((metric) => metric.name);
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((name) => !operations.includes(`\`${name}`))).toEqual([]);
  });
});
