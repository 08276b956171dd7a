// Main-thread figures from a Chromium trace of the page: every task of the renderer's main thread
// and every animation-frame callback (where the Markdown views render), each as wall time (what
// the reader waits) and thread CPU time (what the page itself costs; on a shared machine the wall
// time also counts the time the thread waited for a core).

export const TRACE_CATEGORIES = ['devtools.timeline', 'disabled-by-default-devtools.timeline'];

function percentile(values, p) {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const round = (x) => Math.round(x * 100) / 100;

/** Figures of a trace (the JSON that `browser.stopTracing()` returns). */
export function traceFigures(buffer) {
  const trace = JSON.parse(buffer.toString('utf8'));
  const events = Array.isArray(trace) ? trace : trace.traceEvents ?? [];
  const mainThreads = new Set(
    events
      .filter((e) => e.ph === 'M' && e.name === 'thread_name' && e.args?.name === 'CrRendererMain')
      .map((e) => `${e.pid}:${e.tid}`),
  );
  const onMain = (name) =>
    events.filter((e) => e.ph === 'X' && e.name === name && typeof e.dur === 'number' && mainThreads.has(`${e.pid}:${e.tid}`));
  const wall = (list) => list.map((e) => e.dur / 1000);
  const cpu = (list) => list.map((e) => (e.tdur ?? e.dur) / 1000);
  const tasks = onMain('RunTask');
  const frames = onMain('FireAnimationFrame');
  return {
    tasks: tasks.length,
    longestTaskMs: round(Math.max(0, ...wall(tasks))),
    longestTaskCpuMs: round(Math.max(0, ...cpu(tasks))),
    tasksOver50Ms: wall(tasks).filter((d) => d > 50).length,
    tasksOver50CpuMs: cpu(tasks).filter((d) => d > 50).length,
    taskCpuP50Ms: round(percentile(cpu(tasks), 50)),
    taskCpuP95Ms: round(percentile(cpu(tasks), 95)),
    renderFrames: frames.length,
    renderCpuP50Ms: round(percentile(cpu(frames), 50)),
    renderCpuP95Ms: round(percentile(cpu(frames), 95)),
    renderCpuMaxMs: round(Math.max(0, ...cpu(frames))),
    renderMaxMs: round(Math.max(0, ...wall(frames))),
  };
}
