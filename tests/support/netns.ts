// Hosts on this machine for tests of what crosses a network: each a network namespace of the test's
// own with a veth pair into a bridge, and the shared services listening on the bridge's address. A
// host sees nothing of the others but what they serve on their addresses, and losing one is taking its
// link down. Needs root and iproute2 (`ip`), as CI has.
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

export interface TestHost {
  name: string;
  /** The namespace's name, for `ip netns exec`. */
  namespace: string;
  address: string;
  /** The command prefix that runs a program on this host. */
  exec: string[];
  /** Cuts the host off the network (its end of the link in the bridge goes down). */
  linkDown(): Promise<void>;
  linkUp(): Promise<void>;
}

export interface TestNetwork {
  /** The bridge's address: where services shared by every host listen. */
  address: string;
  /** The network, as CIDR. */
  cidr: string;
  addHost(name: string): Promise<TestHost>;
  destroy(): Promise<void>;
}

/** Whether this process may make namespaces (root with iproute2). */
export async function canMakeHosts(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  const probe = `gbprobe${randomInt(1e6)}`;
  try {
    await ip('netns', 'add', probe);
  } catch {
    return false;
  }
  await ip('netns', 'del', probe);
  return true;
}

export async function createTestNetwork(): Promise<TestNetwork> {
  // A /24 of 10.0.0.0/8 and short names of its own, so two runs at once never meet.
  const tag = randomInt(1, 0xfff).toString(16);
  const subnet = `10.${randomInt(100, 250)}.${randomInt(1, 250)}`;
  const bridge = `gbbr${tag}`;
  const address = `${subnet}.1`;
  const namespaces: string[] = [];
  const destroy = async (): Promise<void> => {
    // Deleting a namespace deletes its end of each veth pair, and with it the other end.
    for (const namespace of namespaces) await ip('netns', 'del', namespace).catch(() => undefined);
    await ip('link', 'del', bridge).catch(() => undefined);
  };
  await ip('link', 'add', bridge, 'type', 'bridge');
  try {
    await ip('addr', 'add', `${address}/24`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    address,
    cidr: `${subnet}.0/24`,
    addHost: async (name) => {
      const index = namespaces.length + 2;
      const namespace = `gb${tag}-${name}`;
      const outside = `gbv${tag}h${index}`;
      const inside = `gbv${tag}n${index}`;
      const hostAddress = `${subnet}.${index}`;
      await ip('netns', 'add', namespace);
      namespaces.push(namespace);
      await ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
      // Until the inside end is moved into the namespace, deleting the namespace would not take the pair.
      await ip('link', 'set', inside, 'netns', namespace).catch(async (err: unknown) => {
        await ip('link', 'del', outside).catch(() => undefined);
        throw err;
      });
      await ip('link', 'set', outside, 'master', bridge);
      await ip('link', 'set', outside, 'up');
      const inNs = (...args: string[]): Promise<void> => ip('netns', 'exec', namespace, 'ip', ...args);
      await inNs('addr', 'add', `${hostAddress}/24`, 'dev', inside);
      await inNs('link', 'set', inside, 'up');
      await inNs('link', 'set', 'lo', 'up');
      const host: TestHost = {
        name,
        namespace,
        address: hostAddress,
        exec: ['ip', 'netns', 'exec', namespace],
        linkDown: () => ip('link', 'set', outside, 'down'),
        linkUp: () => ip('link', 'set', outside, 'up'),
      };
      return host;
    },
    destroy,
  };
}
