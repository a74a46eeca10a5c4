// How long the page waits before reconnecting: doubling from half a second
// up to ten, with up to 30% jitter so that a hundred pages that lost the
// same server do not all come back in the same millisecond.

export const BACKOFF_FIRST_MS = 500;
export const BACKOFF_CAP_MS = 10000;
/** Attempts beyond this count no further (the cap is long reached). */
export const BACKOFF_MAX_ATTEMPT = 20;

/** The wait before attempt number `attempt` (0 first); `random` in [0, 1). */
export function backoffDelay(attempt, random = Math.random) {
  const n = Math.max(0, Math.min(attempt, BACKOFF_MAX_ATTEMPT));
  const base = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * Math.pow(2, n));
  return base + random() * base * 0.3;
}
