// Charts of credits per day, drawn by uPlot (vendored, /vendor/uplot/): stacked bars of chat and
// image credits, optionally with a line on its own scale (sign-ups). Colours come from the page's
// CSS variables, so the charts follow the dark and light palettes.

import uPlot from '/vendor/uplot/uPlot.esm.js';

/** A CSS variable of the page, for canvas colours. */
function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** Seconds since the epoch of a `YYYY-MM-DD` UTC day. */
function daySeconds(date) {
  return Date.UTC(Number(date.slice(0, 4)), Number(date.slice(5, 7)) - 1, Number(date.slice(8, 10))) / 1000;
}

/**
 * Draws `days` (`[{date, ...}]`, oldest first) into `container`: the `stack` keys as bars stacked
 * bottom-up, and `line` (a key) as a line on a right-hand scale. Redraws at the container's width;
 * returns the uPlot instance. `container.dataset.points` tells tests how many days were drawn.
 */
export function dailyChart(container, days, { stack, line } = {}) {
  const xs = days.map((d) => daySeconds(d.date));
  const raw = Object.fromEntries([...stack.map((s) => s.key), ...(line ? [line.key] : [])].map((key) => [key, days.map((d) => d[key] || 0)]));
  // uPlot does not stack: each bar series is drawn at the running total, the tallest first, so the
  // later ones cover its lower part. The legend shows each series' own value.
  const totals = [];
  let running = days.map(() => 0);
  for (const s of stack) {
    running = running.map((sum, i) => sum + raw[s.key][i]);
    totals.push(running);
  }
  const bars = uPlot.paths.bars({ size: [0.7, 48], align: 0 });
  const grid = { stroke: cssVar('--border'), width: 1 };
  const axis = { stroke: cssVar('--muted'), grid, ticks: grid };
  const series = [{ label: 'Day', value: (u, v) => (v == null ? '' : new Date(v * 1000).toISOString().slice(0, 10)) }];
  const data = [xs];
  for (let i = stack.length - 1; i >= 0; i -= 1) {
    const s = stack[i];
    series.push({
      label: s.label,
      fill: cssVar(s.color),
      stroke: cssVar(s.color),
      width: 0,
      paths: bars,
      points: { show: false },
      value: (u, v, si, idx) => (idx == null ? '—' : raw[s.key][idx].toLocaleString()),
    });
    data.push(totals[i]);
  }
  const axes = [{ ...axis, values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toISOString().slice(5, 10)) }, { ...axis, size: 48 }];
  const scales = { x: { time: true, range: (u, min, max) => [min - 43_200, max + 43_200] }, y: { range: (u, min, max) => [0, Math.max(4, max * 1.1)] } };
  if (line) {
    series.push({ label: line.label, scale: 'count', stroke: cssVar(line.color), width: 2, points: { show: true, size: 4 } });
    data.push(raw[line.key]);
    axes.push({ ...axis, scale: 'count', side: 1, grid: { show: false } });
    scales.count = { range: (u, min, max) => [0, Math.max(4, max * 1.2)] };
  }
  const width = () => Math.max(280, container.clientWidth);
  const options = {
    width: width(),
    height: 220,
    series,
    axes,
    scales,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
  };
  container.replaceChildren();
  const chart = new uPlot(options, data, container);
  new ResizeObserver(() => chart.setSize({ width: width(), height: 220 })).observe(container);
  container.dataset.points = String(days.length);
  container.dataset.total = String(totals.length ? totals[totals.length - 1].reduce((a, b) => a + b, 0) : 0);
  return chart;
}
