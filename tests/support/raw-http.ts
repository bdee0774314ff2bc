// HTTP/1.1 over a raw socket, for what fetch will not send or will not show: malformed requests,
// several requests on one connection, and whether the server kept the connection.
import { connect } from 'node:net';

export interface RawAnswer {
  status: number;
  head: string;
  body: string;
}

/**
 * Writes `payload` on one connection and reads until the server closes it, or `closeAfterMs`
 * pass. With `end`, the client's side is closed once the payload is written.
 */
export function exchange(
  port: number,
  payload: string | Buffer,
  options: { end?: boolean; closeAfterMs?: number } = {},
): Promise<RawAnswer[]> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () =>
      options.end === true ? socket.end(payload) : socket.write(payload),
    );
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), options.closeAfterMs ?? 10_000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    // A server closing on a client still writing resets the connection: what arrived before counts.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      if (text === '') {
        resolve([]);
        return;
      }
      resolve(
        text.split(/(?=HTTP\/1\.1 \d{3} )/).map((answer) => {
          const [head = '', ...rest] = answer.split('\r\n\r\n');
          return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0), head, body: rest.join('\r\n\r\n') };
        }),
      );
    });
  });
}
