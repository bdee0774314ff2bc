// Ports for the test run's shared services, chosen below the kernel's ephemeral range. The
// Temporal dev server picks its internal ports by binding port 0 and letting go, and so does any
// process listening on port 0: none of them can be handed a port from below that range, so none can
// take one of these between its choice and its bind (which failed a CI run once).
import { readFileSync } from 'node:fs';
import getPort, { portNumbers } from 'get-port';

const LOWEST = 10_000;

function ephemeralStart(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const start = Number(low);
    return Number.isInteger(start) && start > LOWEST + 1000 ? start : 32_768;
  } catch {
    // Not Linux: IANA's dynamic range.
    return 49_152;
  }
}

const below = ephemeralStart();

/** A free port below the ephemeral range; get-port skips ports taken or handed out in this process. */
export function servicePort(): Promise<number> {
  return getPort({ port: portNumbers(LOWEST, below - 1) });
}
