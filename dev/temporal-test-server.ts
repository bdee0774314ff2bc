// Temporal's time-skipping test server (the Java SDK's), for the workflow unit tests on
// TestWorkflowEnvironment: the Temporal CLI's dev server cannot skip time. It comes from Maven Central
// (a registry, like npm) into the tools folder once: `mvn dependency:copy-dependencies` of the one
// artifact, plus a launcher script that @temporalio/testing runs as `<launcher> <port>`.
import { spawn } from 'node:child_process';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import path from 'node:path';
import which from 'which';

import { loadConfig } from '../lib/config.js';
import { isEntryPoint, runEntryPoint } from '../lib/entry.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { isExecutable } from './go-tool.js';
import { spawnWatched, waitUntil } from './service-process.js';
import { stopProcess } from './temporal-dev-server.js';

/**
 * Pinned like a devDependency: the test server speaks the server API @temporalio/testing expects, and a
 * moving version would make a test run depend on the day it ran.
 */
export const TEST_SERVER_VERSION = '1.31.0';

const ARTIFACT = 'io.temporal:temporal-test-server';
const LAUNCHER = 'temporal-test-server';

export function testServerPath(toolsDir: string, version = TEST_SERVER_VERSION): string {
  return path.join(toolsDir, `temporal-test-server-${version}`, LAUNCHER);
}

async function required(binary: string): Promise<string> {
  const found = await which(binary, { nothrow: true });
  if (found === null)
    throw new Error(
      `The Temporal test server (for the workflow unit tests) needs \`${binary}\` on PATH: ` +
        'install a JDK 17 or newer and Maven 3.8 or newer (e.g. `apt-get install openjdk-17-jdk-headless maven`).',
    );
  return found;
}

function pom(version: string): string {
  const [groupId, artifactId] = ARTIFACT.split(':');
  return `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>gpu-batch</groupId>
  <artifactId>temporal-test-server-tool</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>${groupId}</groupId><artifactId>${artifactId}</artifactId><version>${version}</version></dependency>
  </dependencies>
</project>
`;
}

const MAIN_CLASS = 'io.temporal.testserver.TestServer';
/** The server's classes, pre-parsed: @temporalio/testing gives a server 5 s to listen, a cold JVM on a busy machine takes more. */
const CLASS_ARCHIVE = 'classes.jsa';
const CLASS_LIST = 'classes.lst';
/** Quick to start (no optimizing compiler, one GC thread): a test server serves few requests. */
const JVM_FLAGS = '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC';

function java(): string {
  return process.env.JAVA_HOME !== undefined ? path.join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

// exec, so the process @temporalio/testing starts (and later kills) is the server itself. -Xshare:auto:
// an archive that no longer fits (another JDK) is ignored, not fatal.
function launcher(version: string): string {
  return `#!/bin/sh
# Temporal's time-skipping test server ${version}, installed by \`npm run temporal:test-server:install\`.
# Run by @temporalio/testing as \`${LAUNCHER} <port> [args]\`.
dir="$(cd "$(dirname "$0")" && pwd)"
exec "\${JAVA_HOME:+$JAVA_HOME/bin/}java" ${JVM_FLAGS} -Xshare:auto -XX:SharedArchiveFile="$dir/${CLASS_ARCHIVE}" \\
  -cp "$dir/lib/*" ${MAIN_CLASS} "$@"
`;
}

function run(command: string, args: string[], cwd: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('exit', resolve);
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no free port'));
      });
    });
  });
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      resolve(false);
    });
  });
}

/**
 * Starts the server once, to list the classes it loads until it listens, and archives those classes
 * (JDK class data sharing): the launcher then starts in about a second instead of five to ten. The
 * archive holds the jars' absolute paths, so it is made in the folder the server runs from.
 */
async function archiveClasses(dir: string, log: Logger): Promise<void> {
  const classpath = `${path.join(dir, 'lib')}/*`;
  const classList = path.join(dir, CLASS_LIST);
  const port = await freePort();
  const server = spawnWatched(
    java(),
    [`-XX:DumpLoadedClassList=${classList}`, '-cp', classpath, MAIN_CLASS, `${port}`],
    {
      env: process.env,
    },
  );
  try {
    await waitUntil('the Temporal test server', 120_000, () => listening(port), server.ended);
  } finally {
    await stopProcess(server.child, 5000);
  }
  const code = await run(
    java(),
    [
      '-Xshare:dump',
      `-XX:SharedClassListFile=${classList}`,
      `-XX:SharedArchiveFile=${path.join(dir, CLASS_ARCHIVE)}`,
      '-cp',
      classpath,
    ],
    dir,
  );
  // Without the archive the server still runs, only slower to start.
  if (code !== 0) log.warn({ code }, 'could not archive the test server classes; it will start slower');
}

/** The launcher's path, installing the server into the tools folder first if it is not there yet. */
export async function ensureTemporalTestServer(
  toolsDir: string,
  log: Logger,
  version = TEST_SERVER_VERSION,
): Promise<string> {
  const target = testServerPath(toolsDir, version);
  if (await isExecutable(target)) return target;
  await required('java');
  const mvn = await required('mvn');

  const staging = `${path.dirname(target)}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await writeFile(path.join(staging, 'pom.xml'), pom(version));
  log.info({ artifact: `${ARTIFACT}:${version}` }, 'installing the Temporal test server from Maven Central, once');
  const code = await run(mvn, ['-q', '-B', 'dependency:copy-dependencies', '-DoutputDirectory=lib'], staging);
  if (code !== 0) {
    await rm(staging, { recursive: true, force: true });
    throw new Error(`mvn dependency:copy-dependencies of ${ARTIFACT}:${version} exited with ${code}`);
  }
  await rm(path.dirname(target), { recursive: true, force: true });
  await rename(staging, path.dirname(target));
  await archiveClasses(path.dirname(target), log);
  // The launcher comes last: while it is missing, the install is unfinished and is done again.
  await writeFile(target, launcher(version), { mode: 0o755 });
  return target;
}

// `npm run temporal:test-server:install` (CI calls it before the tests, which would otherwise install it).
if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('temporal-test-server', config.log);
    const launcherPath = await ensureTemporalTestServer(config.paths.toolsDir, log);
    log.info({ path: launcherPath }, 'Temporal test server ready');
  });
}
