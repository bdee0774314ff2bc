// vLLM's paged KV cache with automatic prefix caching, after vllm/v1/core/block_pool.py and
// kv_cache_manager.py: a pool of fixed-size blocks, reference-counted; a block that is full gets the
// hash of its token prefix chain and stays findable after its request lets go of it, until a new
// allocation needs it (free blocks are handed out least recently freed first, so that is the LRU
// eviction). Block 0 is vLLM's null block and is never handed out.

export class KVBlock {
  refCnt = 0;
  /** Hash of the token chain up to the end of this block, while the block is in the prefix cache. */
  hash: string | null = null;
  prev: KVBlock | null = null;
  next: KVBlock | null = null;
  constructor(readonly id: number) {}
}

/** Free blocks in eviction order: taken from the front, freed blocks appended at the back. */
class FreeBlockQueue {
  private readonly head = new KVBlock(-1);
  private readonly tail = new KVBlock(-2);
  length = 0;

  constructor() {
    this.head.next = this.tail;
    this.tail.prev = this.head;
  }

  append(block: KVBlock): void {
    const last = this.tail.prev ?? this.head;
    last.next = block;
    block.prev = last;
    block.next = this.tail;
    this.tail.prev = block;
    this.length++;
  }

  remove(block: KVBlock): void {
    if (block.prev === null || block.next === null) return;
    block.prev.next = block.next;
    block.next.prev = block.prev;
    block.prev = null;
    block.next = null;
    this.length--;
  }

  popFront(): KVBlock | undefined {
    const first = this.head.next;
    if (first === null || first === this.tail) return undefined;
    this.remove(first);
    return first;
  }
}

export class BlockPool {
  private readonly blocks: KVBlock[] = [];
  private readonly freeQueue = new FreeBlockQueue();
  private readonly cached = new Map<string, KVBlock>();

  constructor(readonly numBlocks: number) {
    for (let id = 0; id < numBlocks; id++) {
      const block = new KVBlock(id);
      this.blocks.push(block);
      if (id > 0) this.freeQueue.append(block);
    }
  }

  /** Blocks not held by any request (cached or not): what an allocation can take. */
  get numFree(): number {
    return this.freeQueue.length;
  }

  /** Full blocks findable by hash (held or free). */
  get numCached(): number {
    return this.cached.size;
  }

  /** vLLM's kv_cache_usage_perc: the share of usable blocks held by requests (0..1). */
  get usage(): number {
    const usable = this.numBlocks - 1;
    return usable > 0 ? 1 - this.freeQueue.length / usable : 0;
  }

  lookup(hash: string): KVBlock | undefined {
    return this.cached.get(hash);
  }

  /** Takes n free blocks, evicting the cached content of any that had some. Callers check numFree first. */
  allocate(n: number): KVBlock[] {
    const out: KVBlock[] = [];
    for (let i = 0; i < n; i++) {
      const block = this.freeQueue.popFront();
      if (block === undefined) throw new Error('KV cache: allocated more blocks than are free');
      if (block.hash !== null) {
        if (this.cached.get(block.hash) === block) this.cached.delete(block.hash);
        block.hash = null;
      }
      block.refCnt = 1;
      out.push(block);
    }
    return out;
  }

  /** A request starts using cached blocks: a free one leaves the free queue (no longer evictable). */
  touch(blocks: readonly KVBlock[]): void {
    for (const block of blocks) {
      if (block.refCnt === 0) this.freeQueue.remove(block);
      block.refCnt++;
    }
  }

  /** Releases blocks, given in the order they should be evicted (vLLM frees a request's tail first). */
  release(blocks: readonly KVBlock[]): void {
    for (const block of blocks) {
      block.refCnt--;
      if (block.refCnt === 0) this.freeQueue.append(block);
    }
  }

  /**
   * vLLM's BlockPool.reset_prefix_cache: forgets every cached block, but only when no request holds
   * any block (false otherwise, and nothing changes).
   */
  resetPrefixCache(): boolean {
    if (this.freeQueue.length !== this.numBlocks - 1) return false;
    for (const block of this.cached.values()) block.hash = null;
    this.cached.clear();
    return true;
  }

  /** Makes a full block findable by the hash of its prefix chain. */
  cache(block: KVBlock, hash: string): void {
    if (block.hash !== null) return;
    // Two requests may compute the same block side by side; like vLLM, the first stays the one found.
    if (this.cached.has(hash)) return;
    block.hash = hash;
    this.cached.set(hash, block);
  }
}

/** What the KV cache manager needs to know of a request. */
export interface KVRequest {
  readonly numComputed: number;
  /** Prompt plus output tokens known so far. */
  readonly numTokens: number;
  /** Hash of the token chain through full block i (only asked for blocks that are full). */
  blockHash(i: number): string;
}

export interface CacheHit {
  blocks: KVBlock[];
  tokens: number;
}

export class KVCacheManager {
  readonly pool: BlockPool;
  private readonly held = new Map<KVRequest, KVBlock[]>();
  private readonly hashedBlocks = new Map<KVRequest, number>();
  static readonly noHit: CacheHit = { blocks: [], tokens: 0 };

  constructor(
    numBlocks: number,
    readonly blockSize: number,
    readonly maxModelLen: number,
    readonly enableCaching: boolean,
  ) {
    this.pool = new BlockPool(numBlocks);
  }

  blocksOf(request: KVRequest): number {
    return this.held.get(request)?.length ?? 0;
  }

  /**
   * The longest run of cached full blocks at the start of the request's tokens. When every token
   * hits, the last one is recomputed anyway (its logits are needed), as vLLM does: at most
   * numTokens - 1 tokens, in whole blocks.
   */
  computedBlocks(request: KVRequest): CacheHit {
    if (!this.enableCaching) return KVCacheManager.noHit;
    const maxBlocks = Math.floor((request.numTokens - 1) / this.blockSize);
    const blocks: KVBlock[] = [];
    for (let i = 0; i < maxBlocks; i++) {
      const block = this.pool.lookup(request.blockHash(i));
      if (block === undefined) break;
      blocks.push(block);
    }
    return { blocks, tokens: blocks.length * this.blockSize };
  }

  /**
   * Room for numNew more tokens (after the cache hit, for a request being admitted). False, with
   * nothing changed, when there are not enough free blocks: the scheduler then preempts or waits.
   */
  allocateSlots(request: KVRequest, numNew: number, hit: CacheHit = KVCacheManager.noHit): boolean {
    const held = this.held.get(request) ?? [];
    const computed = request.numComputed + hit.tokens;
    const needTokens = Math.min(computed + numNew, this.maxModelLen);
    const newBlocks = Math.max(0, Math.ceil(needTokens / this.blockSize) - held.length - hit.blocks.length);
    // Cached blocks nobody holds are counted as free; touching them takes them out of the free queue.
    const evictableHits = hit.blocks.reduce((n, b) => n + (b.refCnt === 0 ? 1 : 0), 0);
    if (newBlocks + evictableHits > this.pool.numFree) return false;
    if (hit.blocks.length > 0) {
      this.pool.touch(hit.blocks);
      held.push(...hit.blocks);
      this.hashedBlocks.set(request, held.length);
    }
    if (newBlocks > 0) held.push(...this.pool.allocate(newBlocks));
    this.held.set(request, held);
    if (this.enableCaching) this.cacheBlocks(request, held, Math.min(computed + numNew, request.numTokens));
    return true;
  }

  /** Blocks become findable as soon as they are scheduled to be filled, as in vLLM. */
  private cacheBlocks(request: KVRequest, held: KVBlock[], numTokens: number): void {
    const full = Math.floor(numTokens / this.blockSize);
    let done = this.hashedBlocks.get(request) ?? 0;
    for (; done < full; done++) {
      const block = held[done];
      if (block !== undefined) this.pool.cache(block, request.blockHash(done));
    }
    this.hashedBlocks.set(request, done);
  }

  /** Frees every block of the request, tail first (so the end of a prompt is evicted before its start). */
  free(request: KVRequest): void {
    const held = this.held.get(request);
    this.held.delete(request);
    this.hashedBlocks.delete(request);
    if (held !== undefined) this.pool.release(held.reverse());
  }
}
