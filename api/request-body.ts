// Hearing a request body out when the answer comes before its end (a 413, a 401 to an upload, a
// malformed part).
//
// An HTTP/1.1 client sends its whole body before it reads the answer. A server that answers early
// and then stops reading (or closes) meets a client still writing: its next write gets a reset, and
// a reset can discard the answer it had not read yet (`fetch failed: write EPIPE` where a 413 was
// sent; nodejs/node#54366). Nginx reads on after its answer for the same reason ("lingering
// close"). Here the rest of such a body is read and dropped before the answer, within bounds, so
// the client, done sending, reads the answer, and the connection stays usable. Cancelling the body
// stream instead would destroy the socket before the answer is even written.

export interface DrainBounds {
  /** At most this many bytes are read. */
  bytes: number;
  /** For at most this long: a client trickling its body does not hold the answer longer. */
  ms: number;
}

/** Reads and drops what is left of a body within `bounds`: true when it ended within them. */
export async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, bounds: DrainBounds): Promise<boolean> {
  let left = bounds.bytes;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((resolve) => {
    timer = setTimeout(() => {
      resolve('expired');
    }, bounds.ms);
  });
  try {
    for (;;) {
      const read = reader.read();
      const next = await Promise.race([read, expired]);
      if (next === 'expired') {
        // Settled when the connection closes, after the answer; nothing waits for it.
        read.catch(() => undefined);
        return false;
      }
      if (next.done) return true;
      left -= next.value.byteLength;
      // Not cancelled: that would reset the connection before the answer is written. The answer
      // closes the connection instead.
      if (left < 0) return false;
    }
  } catch {
    // The client hung up (or its connection went idle): nobody will hear the answer anyway.
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The body's chunks for a Node stream pipeline. A pipeline that fails stops this generator, which
 * leaves the reader as it is (no cancel, unlike `Readable.fromWeb`), so what is left can be drained.
 */
export async function* chunksOf(reader: ReadableStreamDefaultReader<Uint8Array>): AsyncGenerator<Uint8Array> {
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    yield value;
  }
}
