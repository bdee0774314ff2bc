// HTTP/1.1 over a raw socket, for what fetch will not send or will not show: malformed requests,
// bodies sent with pauses, several requests on one connection, and whether the server kept it.
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RawAnswer {
  status: number;
  head: string;
  body: string;
}

/** The answers in what a server sent, each cut by its own framing (Content-Length or chunked). */
function parseAnswers(text: string): RawAnswer[] {
  const answers: RawAnswer[] = [];
  let rest = text;
  while (rest.length > 0) {
    const headEnd = rest.indexOf('\r\n\r\n');
    if (headEnd < 0) break;
    const head = rest.slice(0, headEnd);
    let after = rest.slice(headEnd + 4);
    const length = /^content-length: *(\d+)/im.exec(head)?.[1];
    let body: string;
    if (length !== undefined) {
      body = after.slice(0, Number(length));
      after = after.slice(Number(length));
    } else if (/^transfer-encoding: *chunked/im.test(head)) {
      body = '';
      for (;;) {
        const sizeEnd = after.indexOf('\r\n');
        const size = parseInt(after.slice(0, sizeEnd), 16);
        if (sizeEnd < 0 || Number.isNaN(size)) break;
        body += after.slice(sizeEnd + 2, sizeEnd + 2 + size);
        after = after.slice(sizeEnd + 2 + size + 2);
        if (size === 0) break;
      }
    } else {
      body = after;
      after = '';
    }
    answers.push({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0), head, body });
    rest = after;
  }
  return answers;
}

export interface ExchangeOptions {
  /** Close the client's side once everything is written. */
  end?: boolean;
  /** Wait this long between the parts of the payload. */
  pauseMs?: number;
  /** Give up waiting for the server to close after this long. */
  closeAfterMs?: number;
}

/** Writes `payload` (its parts with pauses between) on one connection and reads until the server closes it. */
export async function exchange(
  port: number,
  payload: string | Buffer | (string | Buffer)[],
  options: ExchangeOptions = {},
): Promise<RawAnswer[]> {
  const parts = Array.isArray(payload) ? payload : [payload];
  const socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  // A server closing on a client still writing resets the connection: what arrived before counts.
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', resolve));
  const timer = setTimeout(() => socket.destroy(), options.closeAfterMs ?? 10_000);
  await new Promise<void>((resolve) => socket.once('connect', resolve).once('close', resolve));
  for (const [i, part] of parts.entries()) {
    if (i > 0) await sleep(options.pauseMs ?? 0);
    if (socket.destroyed) break;
    socket.write(part);
  }
  if (options.end === true && !socket.destroyed) socket.end();
  await closed;
  clearTimeout(timer);
  return parseAnswers(Buffer.concat(chunks).toString('latin1'));
}
