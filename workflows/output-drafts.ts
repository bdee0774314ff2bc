// While a batch runs, its output and error files are written as its chunks end (activities/
// output-draft.ts), so finalize has only the last lines left. This keeps one such write at a time,
// each up to the first chunk not yet ended, and at most `times` of them in a batch (each is a few
// events of history).
import { CancellationScope, log } from '@temporalio/workflow';

import type { ChunkPlan } from '../activities/validate.js';
import { reasonOf } from './failure-types.js';

export class OutputDrafter {
  private readonly ended: boolean[];
  /** The first chunk (in plan order) that has not ended. */
  private through = 0;
  /** `through` when the last write started. */
  private written = 0;
  /** Chunks that end between two writes. */
  private readonly step: number;
  private running: Promise<void> | undefined;

  constructor(
    private readonly chunks: readonly ChunkPlan[],
    times: number,
    private readonly write: (throughLine: number) => Promise<void>,
  ) {
    this.ended = chunks.map(() => false);
    this.step = times > 0 ? Math.ceil(chunks.length / times) : Infinity;
  }

  private get due(): boolean {
    return this.through < this.chunks.length && this.through - this.written >= this.step;
  }

  /** A chunk ended (its lines all have a result): what is before the first one still running can be written. */
  chunkEnded(position: number): void {
    this.ended[position] = true;
    while (this.ended[this.through] === true) this.through++;
    // Once every chunk has ended, finalize writes the rest.
    // A write running now is followed by the next one when it ends, if that is due by then.
    if (this.due && this.running === undefined) this.running = this.loop();
  }

  private async loop(): Promise<void> {
    for (let next = this.chunks[this.through]; next !== undefined && this.due; next = this.chunks[this.through]) {
      this.written = this.through;
      try {
        // Whole even when the batch is cancelled: finalize waits for it, then carries on from it.
        await CancellationScope.nonCancellable(() => this.write(next.firstLine));
      } catch (err) {
        // Only a head start is lost: finalize writes whatever this did not.
        log.warn('could not write the finished lines to the batch files while it runs', { reason: reasonOf(err) });
      }
    }
    this.running = undefined;
  }

  /** Resolves once no write is running (never rejects). */
  async idle(): Promise<void> {
    await this.running;
  }
}
