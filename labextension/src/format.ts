/** Text for durations, fractions and counts: pure functions, no locale or clock involved. */

const DASH = '–';

function pad2(value: number): string {
  return value < 10 ? `0${value}` : String(value);
}

/**
 * A duration in seconds, short: `0.4 s`, `12 s`, `4 m 05 s`, `2 h 03 m`, `3 d 04 h`.
 * Tenths are shown below ten seconds only, where they still say something.
 */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return DASH;
  }
  if (seconds < 10) {
    // Truncated, so 9.96 s reads 9.9 s and not 10.0 s.
    return `${(Math.floor(seconds * 10) / 10).toFixed(1)} s`;
  }
  const whole = Math.floor(seconds);
  if (whole < 60) {
    return `${whole} s`;
  }
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) {
    return `${minutes} m ${pad2(whole % 60)} s`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 24) {
    return `${hours} h ${pad2(minutes % 60)} m`;
  }
  return `${Math.floor(hours / 24)} d ${pad2(hours % 24)} h`;
}

/**
 * A fraction in [0, 1] as a whole percentage, rounded down so that `100%` means finished:
 * 0.999 reads 99%.
 */
export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction) || fraction <= 0) {
    return '0%';
  }
  if (fraction >= 1) {
    return '100%';
  }
  return `${Math.floor(fraction * 100)}%`;
}

/** `1 unit`, `3 units`. */
export function plural(count: number, word: string, many = `${word}s`): string {
  return `${count} ${count === 1 ? word : many}`;
}

/** The last part of a path (`a/b/c.ipynb` -> `c.ipynb`); '' for none. */
export function basename(path: string | null | undefined): string {
  if (!path) {
    return '';
  }
  const parts = path.split(/[\\/]/).filter(part => part !== '');
  return parts.length ? parts[parts.length - 1] : '';
}

/** A date and time from epoch seconds, in the browser's locale; a dash for none. */
export function formatTimestamp(epochSeconds: number | null | undefined): string {
  if (epochSeconds === null || epochSeconds === undefined || !Number.isFinite(epochSeconds)) {
    return DASH;
  }
  return new Date(epochSeconds * 1000).toLocaleString();
}

/** The first `max` characters of one line of text, with an ellipsis when cut. */
export function truncate(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= max ? line : `${line.slice(0, Math.max(0, max - 1))}…`;
}
