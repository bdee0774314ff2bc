import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '.data/', '.tools/', 'dist/', 'dist.*/', '.scratch/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // process.exit is how the entry points report failure; everything else goes through errors
      'no-process-exit': 'off',
    },
  },
  {
    // Tests inspect untyped JSON answers and know what they just created.
    files: ['tests/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no Node APIs, no I/O. A lifecycle module
    // beside a workflow (how it is started, from outside) is ordinary code and is never bundled.
    files: ['workflows/**/*.ts'],
    ignores: ['workflows/*-lifecycle.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['node:*', 'fs', 'path', 'crypto', 'http', 'https', 'child_process'],
              message: 'Workflows must stay deterministic: no Node APIs.',
            },
            {
              // lib/units.ts and lib/sanitize.ts are pure (no import, no clock): the UI's lines count and
              // quote as the rest of the system does.
              group: [
                '../activities/*',
                '../lib/*',
                '!../lib/units.js',
                '!../lib/sanitize.js',
                '../api/*',
                '../schema/*',
                '../wire/*',
                '../dev/*',
              ],
              allowTypeImports: true,
              message: 'Workflows may only import types from outside workflows/.',
            },
          ],
        },
      ],
    },
  },
);
