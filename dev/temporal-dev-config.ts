// temporal-dev.yaml is the declarative description of the local dev server; the Temporal CLI has
// no config file for `server start-dev`, so this module turns the YAML into its flags.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';

const searchAttributeTypes = z.enum(['Text', 'Keyword', 'Int', 'Double', 'Bool', 'Datetime', 'KeywordList']);

const devConfigSchema = z
  .object({
    ip: z.string().default('127.0.0.1'),
    uiIp: z.string().optional(),
    port: z.number().int().min(0).max(65535).default(7233),
    uiPort: z.number().int().min(0).max(65535).optional(),
    httpPort: z.number().int().min(0).max(65535).optional(),
    metricsPort: z.number().int().min(0).max(65535).optional(),
    namespaces: z.array(z.string().min(1)).default(['default']),
    /** Relative to the YAML file; omit for an in-memory server. */
    dbFile: z.string().optional(),
    logLevel: z.enum(['debug', 'info', 'warn', 'error', 'never']).default('warn'),
    headless: z.boolean().default(false),
    searchAttributes: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), searchAttributeTypes).default({}),
    dynamicConfig: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

export type TemporalDevConfig = z.infer<typeof devConfigSchema>;

export function parseTemporalDevConfig(text: string, baseDir: string, source = 'temporal-dev.yaml'): TemporalDevConfig {
  const result = devConfigSchema.safeParse(parse(text) ?? {});
  if (!result.success) {
    const problems = result.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n');
    throw new Error(`${source} is invalid:\n${problems}`);
  }
  const config = result.data;
  if (config.dbFile !== undefined) config.dbFile = path.resolve(baseDir, config.dbFile);
  return config;
}

export function readTemporalDevConfig(file: string): TemporalDevConfig {
  return parseTemporalDevConfig(readFileSync(file, 'utf8'), path.dirname(file), file);
}

/** The `temporal server start-dev` arguments that realise the config. */
export function startDevArgs(config: TemporalDevConfig): string[] {
  const args = [
    'server',
    'start-dev',
    '--ip',
    config.ip,
    '--port',
    String(config.port),
    '--log-level',
    config.logLevel,
  ];
  if (config.uiIp !== undefined) args.push('--ui-ip', config.uiIp);
  if (config.uiPort !== undefined) args.push('--ui-port', String(config.uiPort));
  if (config.httpPort !== undefined) args.push('--http-port', String(config.httpPort));
  if (config.metricsPort !== undefined) args.push('--metrics-port', String(config.metricsPort));
  if (config.dbFile !== undefined) args.push('--db-filename', config.dbFile);
  if (config.headless) args.push('--headless');
  for (const ns of config.namespaces) if (ns !== 'default') args.push('--namespace', ns);
  for (const [name, type] of Object.entries(config.searchAttributes))
    args.push('--search-attribute', `${name}=${type}`);
  for (const [key, value] of Object.entries(config.dynamicConfig)) {
    args.push('--dynamic-config-value', `${key}=${JSON.stringify(value)}`);
  }
  return args;
}

function hostFor(ip: string): string {
  // A wildcard bind is reachable on loopback; IPv6 literals need brackets in host:port.
  if (ip === '0.0.0.0') return '127.0.0.1';
  if (ip === '::') return '[::1]';
  return ip.includes(':') ? `[${ip}]` : ip;
}

export function devServerAddress(config: TemporalDevConfig): string {
  return `${hostFor(config.ip)}:${config.port}`;
}

export function devServerUiUrl(config: TemporalDevConfig): string | undefined {
  if (config.headless) return undefined;
  return `http://${hostFor(config.uiIp ?? config.ip)}:${config.uiPort ?? config.port + 1000}`;
}
