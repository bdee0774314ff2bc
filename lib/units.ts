// Numbers as people read them, the same everywhere they are shown (the command line, API errors, the
// Temporal UI). Pure: workflow code imports it too, so nothing here may touch Node's APIs or a clock.

/** 1234567 → "1,234,567", 37.46 → "37.5" (by hand: the same on every worker, whatever its locale data). */
export function formatCount(n: number): string {
  const [whole = '0', fraction] = String(Math.round(n * 10) / 10).split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return fraction === undefined ? grouped : `${grouped}.${fraction}`;
}

/** Bytes in binary units to a tenth: "812 B", "3.4 KB", "200.0 MB", "1.5 GB". */
export function formatBytes(bytes: number): string {
  const units = ['KB', 'MB', 'GB', 'TB'];
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
