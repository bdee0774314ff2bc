// The Label Studio user of the tests (baked into the migrated template data folder).
export const LS_USER = 'tester@localhost';
export const LS_PASSWORD = 'tester-password';
export const LS_TOKEN = 'test-token-0123456789abcdef';
