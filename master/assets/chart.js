/* Barrage charts: small dependency-free SVG line and bar charts, for the HTML report
 * and the live web UI (which redraws them every 2 s through chart.update).
 *
 *   const chart = BarrageChart.create(container, {
 *     kind: 'line',            // or 'bar' (grouped bars over categories)
 *     x: 'time',               // seconds, labelled mm:ss; 'number' (a load level); 'category' (bars)
 *     xTitle: 'time (mm:ss)', yTitle: 'latency (ms)',
 *     format: v => v + ' ms',  // values in the tooltip and the y ticks' unit-free labels
 *     height: 240,
 *   });
 *   chart.update([{ name: 'p95', points: [[0, 12.5], [1, null], [2, 14]] }],
 *                { vlines: [{ x: 2, label: 'knee' }], xMin: 0, xMax: 60, categories: [...] });
 *
 * Line charts may also take `yLog: true` (a log y axis: ticks at 1, 2, 5 x 10^n; a
 * value <= 0 is a gap), `xTicks: [[0, '0%'], [1, '90%'], ...]` (fixed x ticks with
 * their labels, for an axis the caller transformed, such as the percentile spectrum's
 * "nines") and `xFormat: v => ...` (the x value in the tooltip).
 *
 * A null y is a gap in a line. Every text (series names, labels) goes in through
 * textContent or setAttribute, never as markup. Plain ES2017, no modules: the file is
 * inlined in the page, which may load nothing else.
 */
(function (global) {
  'use strict';

  const SVG_NS = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#0891b2', '#ca8a04', '#db2777', '#475569'];
  const MARGIN = { top: 14, right: 18, bottom: 42, left: 64 };
  /** Above this many points a series is drawn without point markers. */
  const MARKER_MAX_POINTS = 40;

  function svg(tag, attrs, parent) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function div(cls, parent, text) {
    const e = document.createElement('div');
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  /** Heckbert's "nice numbers": 1, 2 or 5 times a power of ten. */
  function niceNum(x, round) {
    const exp = Math.floor(Math.log10(x));
    const f = x / Math.pow(10, exp);
    let nf;
    if (round) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * Math.pow(10, exp);
  }

  /** Ticks covering [min, max] with about `count` nice steps. */
  function niceTicks(min, max, count) {
    if (!isFinite(min) || !isFinite(max)) {
      min = 0;
      max = 1;
    }
    if (max === min) {
      const pad = max === 0 ? 1 : Math.abs(max) * 0.1;
      max += pad;
      if (min !== 0) min -= pad;
    }
    const step = niceNum((max - min) / Math.max(1, count - 1), true);
    const lo = Math.floor(min / step + 1e-9) * step;
    const hi = Math.ceil(max / step - 1e-9) * step;
    const ticks = [];
    for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Math.round(v / step) * step);
    return { min: lo, max: hi, step: step, ticks: ticks };
  }

  /** Log ticks covering [min, max] (both > 0): each decade, with 2 and 5 between
   * when the span is under three decades. */
  function logTicks(min, max) {
    let lo = Math.floor(Math.log10(min) + 1e-9);
    let hi = Math.ceil(Math.log10(max) - 1e-9);
    if (hi <= lo) hi = lo + 1;
    const ticks = [];
    const steps = hi - lo < 3 ? [1, 2, 5] : [1];
    for (let e = lo; e <= hi; e++) {
      for (const m of steps) {
        const v = m * Math.pow(10, e);
        // 2 x 10^-1 is 0.2, not 0.20000000000000004.
        if (v <= Math.pow(10, hi) * 1.0001) ticks.push(Number(v.toPrecision(6)));
      }
    }
    return { min: Math.pow(10, lo), max: Math.pow(10, hi), step: 0, ticks: ticks, log: true };
  }

  /** Time ticks: steps people read (5 s, 30 s, 2 min, 1 h...). */
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  function timeTicks(min, max, count) {
    const span = Math.max(1, max - min);
    let step = TIME_STEPS[TIME_STEPS.length - 1];
    for (const s of TIME_STEPS) {
      if (span / s <= count) {
        step = s;
        break;
      }
    }
    const ticks = [];
    for (let v = Math.ceil(min / step) * step; v <= max; v += step) ticks.push(v);
    return { min: min, max: max, step: step, ticks: ticks };
  }

  /** Seconds as m:ss, or h:mm:ss past an hour. */
  function formatTime(s) {
    const neg = s < 0;
    let t = Math.round(Math.abs(s));
    const h = Math.floor(t / 3600);
    t -= h * 3600;
    const m = Math.floor(t / 60);
    const sec = t - m * 60;
    const pad = (n) => (n < 10 ? '0' : '') + n;
    return (neg ? '-' : '') + (h > 0 ? h + ':' + pad(m) : String(m)) + ':' + pad(sec);
  }

  /** A plain number with thousands separators and up to `decimals` decimals. */
  function formatNumber(v, decimals) {
    if (v === null || v === undefined || !isFinite(v)) return '—';
    return v.toLocaleString('en-US', { maximumFractionDigits: decimals === undefined ? 2 : decimals });
  }

  /** Axis labels: short (12k, 1.5M), as many decimals as the step needs. */
  function formatTick(v, step) {
    const a = Math.abs(v);
    if (a >= 1e6) return formatNumber(v / 1e6, 2) + 'M';
    if (a >= 1e4) return formatNumber(v / 1e3, 1) + 'k';
    const decimals = step > 0 ? Math.max(0, Math.min(4, -Math.floor(Math.log10(step) + 1e-9))) : 2;
    return formatNumber(v, decimals);
  }

  function isNum(v) {
    return typeof v === 'number' && isFinite(v);
  }

  class Chart {
    constructor(container, options) {
      this.options = Object.assign({ kind: 'line', x: 'time', height: 240, xTitle: '', yTitle: '' }, options || {});
      this.container = container;
      this.hidden = new Set();
      this.series = [];
      this.extra = {};
      this.hover = null;
      container.classList.add('bc-chart', 'bc-' + this.options.kind);
      while (container.firstChild) container.removeChild(container.firstChild);
      if (this.options.title) div('bc-title', container, this.options.title);
      this.legend = div('bc-legend', container);
      this.plot = div('bc-plot', container);
      this.plot.style.height = this.options.height + 'px';
      this.tip = div('bc-tip', this.plot);
      this.tip.style.display = 'none';
      this.width = 0;
      if (typeof ResizeObserver === 'function') {
        let pending = false;
        this.observer = new ResizeObserver(() => {
          if (pending) return;
          pending = true;
          requestAnimationFrame(() => {
            pending = false;
            if (Math.abs(this.plot.clientWidth - this.width) > 1) this.render();
          });
        });
        this.observer.observe(this.plot);
      }
    }

    /** Replaces the data and redraws. `extra`: categories, vlines, xMin, xMax. */
    update(series, extra) {
      this.series = (Array.isArray(series) ? series : []).map((s, i) => ({
        name: String(s.name === undefined ? 'series ' + (i + 1) : s.name),
        color: s.color || PALETTE[i % PALETTE.length],
        dash: !!s.dash,
        points: (Array.isArray(s.points) ? s.points : [])
          .filter((p) => Array.isArray(p) && isNum(p[0]))
          // A log axis has no place for 0 or below: such a value is a gap.
          .map((p) => (this.options.yLog && !(p[1] > 0) ? [p[0], null] : p)),
      }));
      // The tooltip looks values up by x.
      for (const s of this.series) s.byX = new Map(s.points.map((p) => [p[0], p[1]]));
      this.extra = extra || {};
      this.render();
    }

    destroy() {
      if (this.observer) this.observer.disconnect();
      while (this.container.firstChild) this.container.removeChild(this.container.firstChild);
    }

    visible() {
      return this.series.filter((s) => !this.hidden.has(s.name));
    }

    renderLegend() {
      while (this.legend.firstChild) this.legend.removeChild(this.legend.firstChild);
      for (const s of this.series) {
        const item = document.createElement('button');
        item.type = 'button';
        item.className = 'bc-key' + (this.hidden.has(s.name) ? ' bc-off' : '');
        item.title = 'show or hide ' + s.name;
        const sw = document.createElement('span');
        sw.className = 'bc-swatch' + (s.dash ? ' bc-dash' : '');
        sw.style.borderColor = s.color;
        sw.style.background = s.dash ? 'transparent' : s.color;
        item.appendChild(sw);
        item.appendChild(document.createTextNode(s.name));
        item.addEventListener('click', () => {
          if (this.hidden.has(s.name)) this.hidden.delete(s.name);
          else this.hidden.add(s.name);
          this.render();
        });
        this.legend.appendChild(item);
      }
    }

    /** Draws everything from this.series: a fresh SVG replaces the old one. */
    render() {
      this.renderLegend();
      const o = this.options;
      const W = Math.max(240, this.plot.clientWidth || 600);
      const H = o.height;
      this.width = this.plot.clientWidth;
      const root = svg('svg', {
        class: 'bc-svg',
        viewBox: '0 0 ' + W + ' ' + H,
        width: '100%',
        height: H,
        role: 'img',
        preserveAspectRatio: 'none',
      });
      if (o.title) root.setAttribute('aria-label', o.title);
      const old = this.plot.querySelector('svg');
      if (old) this.plot.replaceChild(root, old);
      else this.plot.insertBefore(root, this.tip);
      this.tip.style.display = 'none';

      const series = this.visible();
      const bar = o.kind === 'bar';
      const cats = bar ? (Array.isArray(this.extra.categories) ? this.extra.categories : []) : null;
      let xmin = Infinity;
      let xmax = -Infinity;
      let ymin = Infinity;
      let ymax = -Infinity;
      for (const s of series) {
        for (const p of s.points) {
          if (!isNum(p[1])) continue;
          xmin = Math.min(xmin, p[0]);
          xmax = Math.max(xmax, p[0]);
          ymin = Math.min(ymin, p[1]);
          ymax = Math.max(ymax, p[1]);
        }
      }
      const plotW = W - MARGIN.left - MARGIN.right;
      const plotH = H - MARGIN.top - MARGIN.bottom;
      this.geom = null;
      if (!isFinite(ymin) || (bar && cats.length === 0)) {
        svg('rect', { class: 'bc-frame', x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH }, root);
        svg('text', { class: 'bc-empty', x: MARGIN.left + plotW / 2, y: MARGIN.top + plotH / 2, 'text-anchor': 'middle' }, root).textContent = 'no data';
        return;
      }
      if (isNum(this.extra.xMin)) xmin = Math.min(xmin, this.extra.xMin);
      if (isNum(this.extra.xMax)) xmax = Math.max(xmax, this.extra.xMax);
      const yLog = !bar && !!o.yLog;
      if (o.yMin0 !== false && !yLog) ymin = Math.min(0, ymin);

      const yt = yLog ? logTicks(ymin, ymax) : niceTicks(ymin, ymax, Math.max(3, Math.min(6, Math.floor(plotH / 40))));
      const sy = yLog
        ? (v) => MARGIN.top + plotH - (Math.log10(v / yt.min) / Math.log10(yt.max / yt.min)) * plotH
        : (v) => MARGIN.top + plotH - ((v - yt.min) / (yt.max - yt.min)) * plotH;
      let xt;
      let sx;
      if (bar) {
        const band = plotW / cats.length;
        sx = (i) => MARGIN.left + band * (i + 0.5);
        const every = Math.max(1, Math.ceil(cats.length / Math.max(1, Math.floor(plotW / 64))));
        xt = { ticks: cats.map((_, i) => i).filter((i) => i % every === 0), band: band };
      } else {
        const count = Math.max(2, Math.floor(plotW / 80));
        if (Array.isArray(o.xTicks)) {
          const fixed = o.xTicks.filter((t) => Array.isArray(t) && isNum(t[0]) && t[0] >= xmin - 1e-9 && t[0] <= xmax + 1e-9);
          xt = { min: xmin, max: xmax, step: 0, ticks: fixed.map((t) => t[0]), labels: new Map(fixed.map((t) => [t[0], String(t[1])])) };
        } else if (o.x === 'time') xt = timeTicks(xmin, xmax, count);
        else {
          xt = niceTicks(xmin, xmax, count);
          if (xmax > xmin) {
            xt.ticks = xt.ticks.filter((t) => t >= xmin - 1e-9 && t <= xmax + 1e-9);
            xt.min = xmin;
            xt.max = xmax;
          }
        }
        if (xt.max === xt.min) {
          xt.min -= 1;
          xt.max += 1;
        }
        sx = (v) => MARGIN.left + ((v - xt.min) / (xt.max - xt.min)) * plotW;
      }
      const xLabel = bar
        ? (i) => String(cats[i])
        : o.xFormat
          ? o.xFormat
          : o.x === 'time'
            ? formatTime
            : (v) => formatTick(v, xt.step);
      const xTickLabel = xt.labels ? (v) => xt.labels.get(v) : xLabel;

      // Grid and axes.
      const grid = svg('g', { class: 'bc-grid' }, root);
      for (const t of yt.ticks) {
        const y = sy(t);
        svg('line', { x1: MARGIN.left, x2: MARGIN.left + plotW, y1: y, y2: y }, grid);
        svg('text', { class: 'bc-tick', x: MARGIN.left - 6, y: y + 4, 'text-anchor': 'end' }, root).textContent = formatTick(t, yt.log ? t : yt.step);
      }
      for (const t of xt.ticks) {
        const x = sx(t);
        if (!bar) svg('line', { x1: x, x2: x, y1: MARGIN.top, y2: MARGIN.top + plotH, class: 'bc-vgrid' }, grid);
        svg('text', { class: 'bc-tick bc-xtick', x: x, y: MARGIN.top + plotH + 16, 'text-anchor': 'middle' }, root).textContent = xTickLabel(t);
      }
      svg('line', { class: 'bc-axis', x1: MARGIN.left, x2: MARGIN.left + plotW, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH }, root);
      svg('line', { class: 'bc-axis', x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: MARGIN.top + plotH }, root);
      if (o.xTitle) {
        svg('text', { class: 'bc-axis-title', x: MARGIN.left + plotW / 2, y: H - 6, 'text-anchor': 'middle' }, root).textContent = o.xTitle;
      }
      if (o.yTitle) {
        const cy = MARGIN.top + plotH / 2;
        svg('text', { class: 'bc-axis-title', x: 14, y: cy, 'text-anchor': 'middle', transform: 'rotate(-90 14 ' + cy + ')' }, root).textContent = o.yTitle;
      }

      // Reference lines (a hunt's sustainable level, its knee...).
      // Labels one under the other, on the side of the line with room for them.
      let row = 0;
      for (const v of Array.isArray(this.extra.vlines) ? this.extra.vlines : []) {
        if (!isNum(v.x) || bar || v.x < xt.min || v.x > xt.max) continue;
        const x = sx(v.x);
        const g = svg('g', { class: 'bc-vline' }, root);
        svg('line', { x1: x, x2: x, y1: MARGIN.top, y2: MARGIN.top + plotH, stroke: v.color || '#64748b' }, g);
        if (v.label) {
          const left = x > MARGIN.left + plotW * 0.6;
          svg('text', {
            x: left ? x - 4 : x + 4,
            y: MARGIN.top + 11 + 13 * row++,
            fill: v.color || '#64748b',
            'text-anchor': left ? 'end' : 'start',
          }, g).textContent = String(v.label);
        }
      }

      // Data.
      const data = svg('g', { class: 'bc-data' }, root);
      if (bar) this.drawBars(data, series, cats, xt.band, sx, sy, yt);
      else this.drawLines(data, series, sx, sy, plotW);

      // Hover: crosshair and tooltip at the nearest x.
      const xs = bar ? cats.map((_, i) => i) : this.unionXs(series);
      const cross = svg('line', { class: 'bc-cross', x1: 0, x2: 0, y1: MARGIN.top, y2: MARGIN.top + plotH, visibility: 'hidden' }, root);
      const dots = svg('g', { class: 'bc-dots' }, root);
      const overlay = svg('rect', { class: 'bc-overlay', x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH }, root);
      this.geom = { xs: xs, sx: sx, sy: sy, W: W, bar: bar, cats: cats, cross: cross, dots: dots, xLabel: xLabel };
      overlay.addEventListener('mousemove', (ev) => {
        const r = root.getBoundingClientRect();
        const px = ((ev.clientX - r.left) * W) / Math.max(1, r.width);
        this.hover = px;
        this.showTip(px);
      });
      overlay.addEventListener('mouseleave', () => {
        this.hover = null;
        cross.setAttribute('visibility', 'hidden');
        while (dots.firstChild) dots.removeChild(dots.firstChild);
        this.tip.style.display = 'none';
      });
      // A redraw under a resting mouse (the live page) keeps its tooltip.
      if (this.hover !== null) this.showTip(this.hover);
    }

    unionXs(series) {
      const set = new Set();
      for (const s of series) for (const p of s.points) if (isNum(p[1])) set.add(p[0]);
      return Array.from(set).sort((a, b) => a - b);
    }

    drawLines(g, series, sx, sy, plotW) {
      for (const s of series) {
        const pts = s.points.slice().sort((a, b) => a[0] - b[0]);
        const drawn = pts.length > plotW * 2 ? decimate(pts, sx) : pts;
        let d = '';
        let pen = false;
        for (const p of drawn) {
          if (!isNum(p[1])) {
            pen = false;
            continue;
          }
          d += (pen ? 'L' : 'M') + sx(p[0]).toFixed(1) + ' ' + sy(p[1]).toFixed(1);
          pen = true;
        }
        const path = svg('path', { class: 'bc-series bc-line', d: d, stroke: s.color, fill: 'none' }, g);
        path.setAttribute('data-series', s.name);
        if (s.dash) path.setAttribute('stroke-dasharray', '6 4');
        const real = pts.filter((p) => isNum(p[1]));
        // Few points (a hunt's steps, a short run): each one is marked, so a single
        // point, which draws no line, still shows.
        if (real.length <= MARKER_MAX_POINTS) {
          for (const p of real) {
            svg('circle', { class: 'bc-marker', cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: 3, fill: s.color }, g);
          }
        }
      }
    }

    drawBars(g, series, cats, band, sx, sy, yt) {
      const n = Math.max(1, series.length);
      const inner = band * 0.8;
      const w = Math.max(1, inner / n - (n > 1 ? 1 : 0));
      const y0 = sy(Math.max(0, yt.min));
      series.forEach((s, j) => {
        let d = '';
        for (const p of s.points) {
          const i = p[0];
          if (!isNum(p[1]) || i < 0 || i >= cats.length || p[1] === 0) continue;
          const x = sx(i) - inner / 2 + j * (inner / n);
          const y = sy(p[1]);
          d += 'M' + x.toFixed(1) + ' ' + y0.toFixed(1) + 'V' + y.toFixed(1) + 'h' + w.toFixed(1) + 'V' + y0.toFixed(1) + 'Z';
        }
        const path = svg('path', { class: 'bc-series bc-bar', d: d, fill: s.color }, g);
        path.setAttribute('data-series', s.name);
      });
    }

    showTip(px) {
      const geo = this.geom;
      if (!geo || geo.xs.length === 0) return;
      const fmt = this.options.format || ((v) => formatNumber(v, 3));
      let xv;
      if (geo.bar) {
        const i = Math.round((px - MARGIN.left) / ((geo.W - MARGIN.left - MARGIN.right) / geo.cats.length) - 0.5);
        xv = Math.max(0, Math.min(geo.cats.length - 1, i));
      } else {
        let best = 0;
        let bestD = Infinity;
        // xs is sorted and sx is increasing: binary search on pixels.
        let lo = 0;
        let hi = geo.xs.length - 1;
        while (hi - lo > 1) {
          const mid = (lo + hi) >> 1;
          if (geo.sx(geo.xs[mid]) < px) lo = mid;
          else hi = mid;
        }
        for (const i of [lo, hi]) {
          const dd = Math.abs(geo.sx(geo.xs[i]) - px);
          if (dd < bestD) {
            bestD = dd;
            best = i;
          }
        }
        xv = geo.xs[best];
      }
      const x = geo.sx(xv);
      geo.cross.setAttribute('x1', x);
      geo.cross.setAttribute('x2', x);
      geo.cross.setAttribute('visibility', 'visible');
      while (geo.dots.firstChild) geo.dots.removeChild(geo.dots.firstChild);
      while (this.tip.firstChild) this.tip.removeChild(this.tip.firstChild);
      div('bc-tip-head', this.tip, (this.options.xName ? this.options.xName + ' ' : '') + geo.xLabel(xv));
      for (const s of this.visible()) {
        const value = s.byX.get(xv);
        const row = div('bc-tip-row', this.tip);
        const sw = document.createElement('span');
        sw.className = 'bc-swatch';
        sw.style.background = s.color;
        sw.style.borderColor = s.color;
        row.appendChild(sw);
        row.appendChild(document.createTextNode(s.name + ': '));
        const b = document.createElement('b');
        b.textContent = isNum(value) ? fmt(value) : '—';
        row.appendChild(b);
        if (isNum(value) && !geo.bar) {
          svg('circle', { cx: x, cy: geo.sy(value), r: 4, fill: s.color, class: 'bc-dot' }, geo.dots);
        }
      }
      this.tip.style.display = 'block';
      const plotWidth = this.plot.clientWidth || geo.W;
      const scale = plotWidth / geo.W;
      const left = x * scale;
      const tipW = this.tip.offsetWidth;
      this.tip.style.left = (left + 12 + tipW > plotWidth ? Math.max(0, left - 12 - tipW) : left + 12) + 'px';
      this.tip.style.top = MARGIN.top + 'px';
    }
  }

  /** Keeps the first, lowest, highest and last point of each pixel column. */
  function decimate(pts, sx) {
    const out = [];
    let col = null;
    let bucket = [];
    const flush = () => {
      if (!bucket.length) return;
      const real = bucket.filter((p) => isNum(p[1]));
      if (real.length) {
        let lo = real[0];
        let hi = real[0];
        for (const p of real) {
          if (p[1] < lo[1]) lo = p;
          if (p[1] > hi[1]) hi = p;
        }
        const keep = [real[0], lo, hi, real[real.length - 1]].sort((a, b) => a[0] - b[0]);
        let last = null;
        for (const p of keep) if (p !== last) out.push((last = p));
      }
      if (real.length !== bucket.length) out.push([bucket[bucket.length - 1][0], null]);
      bucket = [];
    };
    for (const p of pts) {
      const c = Math.round(sx(p[0]));
      if (c !== col) {
        flush();
        col = c;
      }
      bucket.push(p);
    }
    flush();
    return out;
  }

  global.BarrageChart = {
    create: (container, options) => new Chart(container, options),
    Chart: Chart,
    niceTicks: niceTicks,
    formatTime: formatTime,
    formatNumber: formatNumber,
  };
})(window);
