import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

import type { Config } from './config.js';

export type { Logger };

/** One logger per process, named for it; children add batch, chunk and request ids. */
export function createLogger(name: string, log: Config['log']): Logger {
  const options = { name, level: log.level };
  if (log.format === 'pretty') {
    return pino(options, pretty({ colorize: process.stdout.isTTY, ignore: 'pid,hostname', translateTime: 'HH:MM:ss' }));
  }
  return pino(options);
}
