// Webhook targets: which addresses count as private, and the dispatcher that refuses them whether the
// URL names an address or a host that resolves to one.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { isPrivateAddress, privateHostReason, publicOnlyAgent } from '../../lib/private-network.js';

describe('private networks', () => {
  it('tells private, loopback and link-local addresses from public ones', () => {
    for (const a of [
      '127.0.0.1',
      '10.0.0.8',
      '172.20.1.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      '::',
      'fd00::1',
      'fe80::1',
      '::ffff:127.0.0.1',
      '::ffff:a9fe:a9fe',
    ]) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111', 'example.com'])
      expect(isPrivateAddress(a), a).toBe(false);
  });

  it('looks inside IPv6 addresses that carry an IPv4 one, and refuses the deprecated and tunnelled ranges', () => {
    // NAT64, 6to4 and IPv4-compatible forms of loopback, private and cloud-metadata addresses.
    for (const a of [
      '64:ff9b::7f00:1',
      '64:ff9b::127.0.0.1',
      '64:ff9b::a9fe:a9fe',
      '2002:7f00:1::',
      '2002:a00:1::1',
      '::127.0.0.1',
      '::a9fe:a9fe',
      '::10.1.2.3',
    ]) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    // Site-local, Teredo (its IPv4 part is obfuscated), documentation, discard.
    for (const a of ['fec0::1', 'feff::1', '2001::1', '2001:0:4136:e378::1', '2001:db8::1', '100::1'])
      expect(isPrivateAddress(a), a).toBe(true);
    // The same forms around public IPv4 addresses stay public.
    for (const a of ['64:ff9b::808:808', '64:ff9b::8.8.8.8', '2002:808:808::1'])
      expect(isPrivateAddress(a), a).toBe(false);
  });

  it('refuses URLs whose host is a private address or this machine, and lets names through to be resolved', () => {
    expect(privateHostReason('http://[::1]:8080/x')).toMatch(/::1 is a private/);
    expect(privateHostReason('https://LOCALHOST/x')).toMatch(/localhost is this machine/);
    expect(privateHostReason('http://api.localhost/x')).toMatch(/this machine/);
    expect(privateHostReason('https://hooks.example.com/x')).toBeUndefined();
    expect(privateHostReason('https://93.184.215.14/x')).toBeUndefined();
  });

  describe('the public-only dispatcher', () => {
    let server: Server;
    let port: number;
    let hits = 0;
    const agent = publicOnlyAgent();
    beforeAll(async () => {
      server = createServer((_req, res) => {
        hits++;
        res.end('ok');
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    afterAll(async () => {
      await agent.close();
      await new Promise((resolve) => server.close(resolve));
    });

    it('will not connect to a private address, written out or behind a name', async () => {
      await expect(request(`http://127.0.0.1:${port}/`, { dispatcher: agent })).rejects.toThrow(
        /127\.0\.0\.1 is a private address/,
      );
      await expect(request(`http://localhost:${port}/`, { dispatcher: agent })).rejects.toThrow(
        /localhost resolves to (127\.0\.0\.1|::1), a private address/,
      );
      expect(hits).toBe(0);
      // The server is there: an ordinary request reaches it.
      expect((await request(`http://127.0.0.1:${port}/`)).statusCode).toBe(200);
      expect(hits).toBe(1);
    });
  });
});
