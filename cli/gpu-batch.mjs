#!/usr/bin/env node
// The `gpu-batch` executable: runs the TypeScript CLI through tsx's loader.
import process from 'node:process';
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
await main(process.argv);
