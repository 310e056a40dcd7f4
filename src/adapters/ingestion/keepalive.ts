import type { Http2Session } from "node:http2";

export interface KeepaliveOptions {
  /** How often the agent pings each HTTP/2 connection; 0 never. */
  readonly intervalMs: number;
  /** How long a ping may go unanswered before the connection counts as dead. */
  readonly timeoutMs: number;
}

/**
 * Pings an HTTP/2 connection every `intervalMs`, one ping at a time, and calls `onDead` when one goes
 * unanswered for `timeoutMs`. A proxy whose host vanished without a FIN or RST leaves a connection that TCP
 * alone may keep for hours, holding its policy streams (and the waiting gauge) open; a ping finds it.
 * Stops by itself when the session closes.
 */
export function keepAlive(session: Http2Session, options: KeepaliveOptions, onDead: () => void): void {
  if (options.intervalMs <= 0) return;
  let unanswered: NodeJS.Timeout | undefined;
  const interval = setInterval(() => {
    if (unanswered || session.destroyed) return;
    try {
      // Called with the ACK, or with an error once the session is gone: either way this ping is settled.
      const sent = session.ping(() => {
        clearTimeout(unanswered);
        unanswered = undefined;
      });
      if (sent) unanswered = setTimeout(onDead, options.timeoutMs).unref();
    } catch {
      // The session is closing: nothing left to watch.
    }
  }, options.intervalMs).unref();
  session.once("close", () => {
    clearInterval(interval);
    clearTimeout(unanswered);
  });
}
