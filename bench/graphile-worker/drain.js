#!/usr/bin/env node
// Drain a pre-filled graphile-worker queue of no-op jobs and report jobs/s.
//
// Usage: node drain.js <connectionString> <jobs> <concurrency> <mode> [maxSeconds]
//   mode = "default": graphile-worker's defaults (no local queue, no
//          completion batching; one get_job + one complete_job per job)
//   mode = "batched": the batching options graphile-worker's own perf test
//          uses (localQueue 500, completeJobBatchDelay 0, failJobBatchDelay 0)
//
// Timing: t0 = just before run() is called; t1 = the moment the database
// confirms that no job rows are left. "from first job" excludes worker
// start-up (pool connect, LISTEN, task setup), as graphile-worker's perf test
// does by subtracting its measured start/stop time.
//
// Time cap: if the queue is not empty after maxSeconds (default 60), the
// drain stops there and the rate is computed from the jobs the database shows
// as done by then ("capped": true, "jobs_done" < "jobs").
"use strict";

// Per-job "Completed task ... with success" log lines would dominate a no-op
// benchmark; graphile-worker's perf test disables them the same way.
process.env.NO_LOG_SUCCESS = "1";

const { run } = require("graphile-worker");
const { Client } = require("pg");
const EventEmitter = require("events");

const [connectionString, jobsArg, concArg, modeArg] = process.argv.slice(2);
const jobs = parseInt(jobsArg, 10);
const concurrency = parseInt(concArg, 10);
const mode = modeArg || "default";
const maxSeconds = parseFloat(process.argv[6] || "60");
if (!connectionString || !(jobs > 0) || !(concurrency > 0)) {
  console.error("usage: node drain.js <connectionString> <jobs> <concurrency> [default|batched]");
  process.exit(2);
}

const workerPreset =
  mode === "batched"
    ? {
        localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      }
    : mode === "default"
      ? {}
      : null;
if (!workerPreset) {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}

async function remainingJobs(client) {
  const { rows } = await client.query(
    "select count(*)::int as n from graphile_worker._private_jobs",
  );
  return rows[0].n;
}

async function main() {
  const check = new Client({ connectionString });
  await check.connect();
  const before = await remainingJobs(check);
  if (before !== jobs) {
    throw new Error(`expected ${jobs} queued jobs, found ${before}`);
  }

  const events = new EventEmitter();
  let completed = 0;
  let failed = 0;
  let tFirst = null;
  let resolveDone;
  const allEventsSeen = new Promise((r) => (resolveDone = r));
  events.on("job:start", () => {
    if (tFirst === null) tFirst = process.hrtime.bigint();
  });
  events.on("job:error", () => {
    failed++;
  });
  events.on("job:complete", () => {
    completed++;
    if (completed === jobs) resolveDone();
  });

  const t0 = process.hrtime.bigint();
  const runner = await run({
    connectionString,
    concurrency,
    maxPoolSize: concurrency + 1, // as graphile-worker's perf test does
    noHandleSignals: true,
    pollInterval: 2000,
    taskList: { noop: async () => {} },
    parsedCronItems: [], // no cron
    events,
    preset: { worker: workerPreset },
  });

  let capTimer;
  const capped = await Promise.race([
    allEventsSeen.then(() => false),
    new Promise((r) => (capTimer = setTimeout(() => r(true), maxSeconds * 1000))),
  ]);
  clearTimeout(capTimer);
  let remaining;
  if (capped) {
    remaining = await remainingJobs(check);
  } else {
    // job:complete may fire before a batched completion is committed: wait
    // until the database itself shows an empty queue.
    while ((remaining = await remainingJobs(check)) !== 0) {
      await new Promise((r) => setTimeout(r, 1));
    }
  }
  const t1 = process.hrtime.bigint();
  const done = jobs - remaining;

  await runner.stop();
  await check.end();
  if (failed) throw new Error(`${failed} jobs failed`);

  const wallS = Number(t1 - t0) / 1e9;
  const drainS = Number(t1 - tFirst) / 1e9;
  const rate = done / wallS;
  const rateFromFirst = done / drainS;
  console.error(
    `mode=${mode} concurrency=${concurrency} jobs=${done}/${jobs}` +
      (capped ? ` (capped at ${maxSeconds}s)` : "") +
      " " +
      `wall=${wallS.toFixed(3)}s (${rate.toFixed(0)} jobs/s incl. start-up), ` +
      `from first job=${drainS.toFixed(3)}s (${rateFromFirst.toFixed(0)} jobs/s)`,
  );
  // Machine-readable result on stdout (one line).
  console.log(
    JSON.stringify({
      jobs,
      jobs_done: done,
      capped,
      concurrency,
      mode,
      wall_s: +wallS.toFixed(4),
      drain_per_s: +rate.toFixed(1),
      drain_per_s_from_first_job: +rateFromFirst.toFixed(1),
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
