import type { SimulatorOptions } from '../../simulator/options.js';
import { startSimulator, type RunningSimulator } from '../../simulator/server.js';

export const FAST_SIM: SimulatorOptions = {
  models: ['sim-test'],
  maxNumSeqs: 64,
  maxModelLen: 4096,
  prefillTokensPerSec: 0,
  prefillMs: 1,
  tokenLatencyMs: 0.2,
  outputTokens: { min: 4, max: 24 },
  embeddingDim: 16,
};

/** A simulator of the test's own (for faults and capacity settings no other test should see). */
export function startTestSimulator(options: Partial<SimulatorOptions> = {}): Promise<RunningSimulator> {
  return startSimulator({ ...FAST_SIM, ...options }, { host: '127.0.0.1', port: 0 });
}

/** PUT to one of the simulator's own controls (/control/faults, /control/capacity). */
async function putControl(sim: { url: string }, control: string, body: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${sim.url}/control/${control}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`setting ${control} failed: ${res.status} ${await res.text()}`);
}

export function setFaults(sim: { url: string }, faults: Record<string, unknown>): Promise<void> {
  return putControl(sim, 'faults', faults);
}

/** The simulated GPU changed while it runs: `maxNumSeqs`, `stepBaseMs`, `stepTokenMs`. */
export function setCapacity(sim: { url: string }, capacity: Record<string, unknown>): Promise<void> {
  return putControl(sim, 'capacity', capacity);
}
