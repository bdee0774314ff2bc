// Keeps outbound calls to user-given URLs (webhooks) off the private network: loopback, RFC 1918,
// link-local (cloud metadata at 169.254.169.254), carrier-grade NAT, unique-local IPv6 and the like.
// Otherwise anyone with an API key could have the orchestrator probe or POST to internal services.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { Agent, buildConnector } from 'undici';

const PRIVATE = new BlockList();
const V4: [string, number][] = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 3], // multicast, reserved, broadcast
];
const V6: [string, number][] = [
  ['::', 127], // unspecified and loopback
  ['64:ff9b:1::', 48], // local-use NAT64
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
];
for (const [net, prefix] of V4) PRIVATE.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of V6) PRIVATE.addSubnet(net, prefix, 'ipv6');

/** True for an IP address on a private, loopback, link-local or otherwise non-public network (IPv4-mapped IPv6 included). */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && PRIVATE.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Why a URL may not be called, when its host says so by itself (an address, or localhost); names that
 * resolve to private addresses are caught when connecting, by {@link publicOnlyAgent}.
 */
export function privateHostReason(url: string): string | undefined {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return `${host} is this machine`;
  if (isPrivateAddress(host)) return `${host} is a private, loopback or link-local address`;
  return undefined;
}

export class PrivateAddressError extends Error {
  readonly code = 'EPRIVATEADDRESS';
}

/** dns.lookup, refusing answers on private networks. Checked on what the connection will use, so a name cannot change between check and connect. */
const publicLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err !== null) {
      callback(err, '', 0);
      return;
    }
    const blocked = addresses.find((a) => isPrivateAddress(a.address));
    if (blocked !== undefined) {
      callback(new PrivateAddressError(`${hostname} resolves to ${blocked.address}, a private address`), '', 0);
      return;
    }
    if (options.all === true) callback(null, addresses);
    else callback(null, addresses[0]?.address ?? '', addresses[0]?.family ?? 4);
  });
};

/** An undici dispatcher that will not connect to private addresses, whether written out or behind a name. */
export function publicOnlyAgent(options: Omit<Agent.Options, 'connect'> = {}): Agent {
  const connect = buildConnector({ lookup: publicLookup });
  return new Agent({
    ...options,
    // An address written out is never looked up, so it is checked here.
    connect: (opts, callback) => {
      const host = opts.hostname.replace(/^\[|\]$/g, '');
      if (isPrivateAddress(host)) callback(new PrivateAddressError(`${host} is a private address`), null);
      else connect(opts, callback);
    },
  });
}
