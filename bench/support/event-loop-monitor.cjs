// Preloaded into the agent by the benchmarks (node --require): answers "event-loop-stall" on the IPC channel
// with the longest event-loop delay since the previous question (perf_hooks monitorEventLoopDelay).
// prom-client's nodejs_eventloop_lag_max_seconds cannot serve: it resets the histogram at the start of each
// scrape, and Node then drops the first interval after a reset, which is exactly the scrape's own rendering.
"use strict";
const { monitorEventLoopDelay } = require("node:perf_hooks");

const histogram = monitorEventLoopDelay({ resolution: 10 });
histogram.enable();
process.on("message", (message) => {
  if (message !== "event-loop-stall") return;
  process.send({ eventLoopStallMs: histogram.max / 1e6 });
  histogram.reset();
});
