// Hearing a request body out when the answer comes before its end (a 413, a malformed upload).
//
// An HTTP/1.1 client sends its whole body before it reads the answer. A server that answers early
// and then stops reading (or closes) meets a client still writing: its next write gets a reset, and
// a reset can discard the answer it had not read yet (`fetch failed: write EPIPE` where a 413 was
// sent; nodejs/node#54366). Nginx reads on after its answer for the same reason ("lingering
// close"). Here the rest of such a body is read and dropped before the answer, up to a bound, so
// the client, done sending, reads the answer, and the connection stays usable. Cancelling the body
// stream instead would destroy the socket before the answer is even written.

/** Reads and drops what is left of a body, up to `budget` bytes: true when it ended within them. */
export async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, budget: number): Promise<boolean> {
  let left = budget;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return true;
      left -= value.byteLength;
      // Not cancelled: that would reset the connection before the answer is written. The answer
      // says it closes the connection instead.
      if (left < 0) return false;
    }
  } catch {
    // The client hung up (or its connection went idle): nobody will hear the answer anyway.
    return false;
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
