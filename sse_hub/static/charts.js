// Small line charts of the hub's own counters, drawn on a canvas by the page.

export const POINTS = 60;

// Prometheus text format: "name{labels} value" lines; the few the charts need.
export function parseMetrics(text) {
  const values = new Map();
  let pid = null;
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue; // comments (# HELP, # TYPE) and blank lines
    const [, name, labels, value] = match;
    if (name === "sse_hub_worker_info") pid = (/pid="([^"]*)"/.exec(labels || "") || [])[1] || null;
    else if (!labels) values.set(name, parseFloat(value));
  }
  return { values, pid };
}

// A counter's rate per second between two samples of the same process. A new
// process (a restart, or another of --workers) starts its counters at zero:
// no rate across that seam.
export class Rate {
  constructor() {
    this.previous = null;
  }

  next(value, pid, atMs) {
    const previous = this.previous;
    this.previous = value === undefined ? null : { value, pid, atMs };
    if (!previous || value === undefined || previous.pid !== pid || value < previous.value) return null;
    const seconds = (atMs - previous.atMs) / 1000;
    return seconds > 0 ? (value - previous.value) / seconds : null;
  }
}

export function humanBytes(bytes) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return (unit === 0 ? Math.round(value) : value.toFixed(1)) + " " + units[unit];
}

function short(value) {
  return value === null ? "" : String(Math.round(value * 1000) / 1000);
}

// One <figure class="chart">: a caption with the newest value and a canvas.
// The series is also in data-values (comma separated, empty for a gap) and
// data-last, for people and tests that would rather not read pixels.
export class Sparkline {
  constructor(figure, format, formatTotal = String) {
    this.figure = figure;
    this.canvas = figure.querySelector("canvas");
    this.output = figure.querySelector("output");
    this.total = figure.querySelector(".total");
    this.format = format;
    this.formatTotal = formatTotal;
    this.values = [];
  }

  // total: the counter a rate comes from, shown under the chart and kept in data-total.
  push(value, total) {
    this.values.push(value);
    if (this.values.length > POINTS) this.values.shift();
    this.figure.dataset.values = this.values.map(short).join(",");
    this.figure.dataset.last = short(value);
    this.output.textContent = value === null ? "–" : this.format(value);
    if (total !== undefined && total !== null) {
      this.figure.dataset.total = short(total);
      this.total.textContent = this.formatTotal(total);
    }
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, width, height);
    const top = Math.max(...this.values.filter((v) => v !== null), 0) || 1;
    const step = (width - 4 * ratio) / (POINTS - 1);
    const offset = POINTS - this.values.length;
    const x = (i) => 2 * ratio + (offset + i) * step;
    const y = (v) => height - 2 * ratio - (v / top) * (height - 4 * ratio);
    context.strokeStyle = context.fillStyle = getComputedStyle(canvas).color;
    context.lineWidth = 1.5 * ratio;
    let run = [];
    const flush = () => {
      if (run.length) {
        context.beginPath();
        run.forEach(([px, py], n) => (n ? context.lineTo(px, py) : context.moveTo(px, py)));
        context.stroke();
        context.lineTo(run[run.length - 1][0], height);
        context.lineTo(run[0][0], height);
        context.globalAlpha = 0.15;
        context.fill();
        context.globalAlpha = 1;
      }
      run = [];
    };
    this.values.forEach((v, i) => (v === null ? flush() : run.push([x(i), y(v)])));
    flush();
    const last = this.values.length - 1;
    if (last >= 0 && this.values[last] !== null) {
      context.beginPath();
      context.arc(x(last), y(this.values[last]), 2 * ratio, 0, 2 * Math.PI);
      context.fill();
    }
  }
}
