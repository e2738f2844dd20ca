/* Barrage report page: builds every table and chart of a `barrage.report.v1` report
 * (the JSON of `--json`, or `GET /api/stats` while a run goes on).
 *
 *   BarrageReport.render(rootElement, report, { live: false });
 *
 * Calling it again with a newer report updates the page in place: charts keep their
 * element and redraw, tables are rebuilt. Any field may be null or missing (a non-SSE
 * run has no TTFE, a plain run no hunt): that part is left out or shows "—".
 * Strings from the report (scenario and endpoint names, failure samples: they come from
 * the target) only ever reach the page as text nodes. Needs chart.js (BarrageChart).
 */
(function (global) {
  'use strict';

  const DASH = '—';
  const COLORS = {
    blue: '#2563eb',
    orange: '#ea580c',
    green: '#16a34a',
    purple: '#9333ea',
    red: '#dc2626',
    teal: '#0891b2',
    amber: '#ca8a04',
    slate: '#475569',
  };

  // ---------------------------------------------------------------- formatting

  function isNum(v) {
    return typeof v === 'number' && isFinite(v);
  }

  function arr(v) {
    return Array.isArray(v) ? v : [];
  }

  function obj(v) {
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  }

  function num(v, decimals) {
    return isNum(v) ? v.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals }) : DASH;
  }

  /** Counts: 1,234,567. */
  function count(v) {
    return isNum(v) ? Math.round(v).toLocaleString('en-US') : DASH;
  }

  /** Milliseconds as the console shows them: whole from 100 ms, else 2 decimals (3 below 1 ms). */
  function ms(v) {
    if (!isNum(v)) return DASH;
    if (Math.abs(v) >= 100) return num(v, 0);
    if (Math.abs(v) >= 1 || v === 0) return num(v, 2);
    return num(v, 3);
  }

  /** Per-second rates. */
  function rate(v) {
    if (!isNum(v)) return DASH;
    return num(v, Math.abs(v) >= 100 ? 1 : 2);
  }

  function pct(ratio) {
    return isNum(ratio) ? num(ratio * 100, 2) + ' %' : DASH;
  }

  function mib(bytes) {
    return isNum(bytes) ? num(bytes / 1048576, 1) : DASH;
  }

  function duration(s) {
    if (!isNum(s)) return DASH;
    if (s < 60) return num(s, 1) + ' s';
    const h = Math.floor(s / 3600);
    const m = Math.floor((s - h * 3600) / 60);
    const sec = Math.round(s - h * 3600 - m * 60);
    return (h ? h + ' h ' : '') + m + ' min ' + (sec < 10 ? '0' : '') + sec + ' s';
  }

  // ---------------------------------------------------------------- DOM

  /** An element; string children become text nodes (never markup). */
  function h(tag, attrs, children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const k in attrs) {
        const v = attrs[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = String(v);
        else e.setAttribute(k, String(v));
      }
    }
    add(e, children);
    return e;
  }

  function add(e, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) c.forEach((x) => add(e, x));
    else if (c instanceof Node) e.appendChild(c);
    else e.appendChild(document.createTextNode(String(c)));
  }

  function badge(text, kind) {
    return h('span', { class: 'badge badge-' + kind }, text);
  }

  function note(text) {
    return h('p', { class: 'note' }, text);
  }

  /**
   * A table. columns: {key, label, help, num, cell(row) -> string | Node}.
   * opts: {id, total: a last row set apart, rowAttrs(row) -> attributes}.
   */
  function table(columns, rows, opts) {
    opts = opts || {};
    const head = h(
      'tr',
      null,
      columns.map((c) => h('th', { class: c.num ? 'num' : null, title: c.help, scope: 'col' }, c.label))
    );
    const line = (row, cls) =>
      h(
        'tr',
        Object.assign({ class: cls }, opts.rowAttrs ? opts.rowAttrs(row) : {}),
        columns.map((c) => h('td', { class: 'c-' + c.key + (c.num ? ' num' : '') }, c.cell(row)))
      );
    const body = h('tbody', null, rows.map((r) => line(r, 'row')));
    const foot = opts.total ? h('tfoot', null, line(opts.total, 'total')) : null;
    return h('div', { class: 'table-wrap' }, h('table', { id: opts.id, class: opts.cls }, [h('thead', null, head), body, foot]));
  }

  /** Key-value pairs as a small two-column table. */
  function facts(title, pairs) {
    return h('div', { class: 'facts' }, [
      title ? h('h3', null, title) : null,
      h(
        'table',
        null,
        h(
          'tbody',
          null,
          pairs.filter(Boolean).map((p) => h('tr', null, [h('th', { scope: 'row', title: p[2] }, p[0]), h('td', { class: 'num' }, p[1])]))
        )
      ),
    ]);
  }

  function card(label, value, sub, kind) {
    return h('div', { class: 'card' + (kind ? ' card-' + kind : '') }, [
      h('div', { class: 'card-label' }, label),
      h('div', { class: 'card-value' }, value),
      sub ? h('div', { class: 'card-sub' }, sub) : null,
    ]);
  }

  function pctl(p, key) {
    const o = obj(p);
    return o ? ms(o[key]) : DASH;
  }

  /** "p50 / p99" of a percentiles object. */
  function pair(p) {
    const o = obj(p);
    return o ? ms(o.p50) + ' / ' + ms(o.p99) : DASH;
  }

  function kindBadge(kind) {
    return badge(kind === 'sse' ? 'SSE' : 'HTTP', kind === 'sse' ? 'sse' : 'http');
  }

  // ---------------------------------------------------------------- the report's facts

  function endpoints(r) {
    return arr(r.endpoints).filter(obj);
  }

  function sseRows(r) {
    return endpoints(r).filter((e) => e.kind === 'sse');
  }

  function isSse(r) {
    return sseRows(r).length > 0 || !!obj(r.ttfe_ms);
  }

  function isRunning(r) {
    return r.stop_reason === 'running';
  }

  function loadText(r) {
    const a = obj(r.arrivals);
    if (a) {
      const stages = arr(a.stages);
      const t = obj(a.trace);
      if (t) {
        return 'replayed trace ' + String(t.file) + ' (' + count(t.lines) + ' arrivals over ' + num(t.span_s, 1) + ' s), at most ' + count(a.max_in_flight) + ' in flight';
      }
      return stages.length
        ? 'arrivals from ' + num(a.start_rate, 1) + '/s through ' + stages.length + ' stages, at most ' + count(a.max_in_flight) + ' in flight'
        : num(a.start_rate, 1) + ' arrivals/s, at most ' + count(a.max_in_flight) + ' in flight';
    }
    return count(r.users) + ' users, spawn rate ' + num(r.spawn_rate, 1) + '/s';
  }

  /** The run's verdict, as a badge. */
  function verdict(r) {
    if (isRunning(r)) return badge('running', 'live');
    // Figures that miss data come first: nothing else they say can be trusted whole.
    if (obj(r.completeness) && r.completeness.verdict === 'incomplete') return badge('data incomplete', 'fail');
    const failed = arr(r.thresholds).filter((t) => obj(t) && t.passed === false).length;
    if (failed) return badge(failed + ' threshold' + (failed > 1 ? 's' : '') + ' failed', 'fail');
    const agg = obj(r.aggregated) || {};
    if (isNum(agg.failures) && agg.failures > 0) return badge(count(agg.failures) + ' failed requests', 'warn');
    if (arr(r.thresholds).length) return badge('all thresholds passed', 'pass');
    return badge('no failed requests', 'pass');
  }

  // ---------------------------------------------------------------- sections

  function summary(r) {
    const agg = obj(r.aggregated) || {};
    const rt = obj(agg.response_time_ms);
    const ttfe = obj(r.ttfe_ms);
    const qps = obj(r.qps) || {};
    const et = obj(r.event_throughput) || {};
    const conn = obj(r.connections) || {};
    const timeline = arr(r.timeline).filter(obj);
    const peakUsers = timeline.reduce((m, p) => (isNum(p.users) && p.users > m ? p.users : m), 0);
    const failures = isNum(agg.failures) ? agg.failures : 0;
    const cards = [
      card('Requests', count(agg.requests), rate(agg.rps) + ' req/s on average, peak ' + rate(qps.max)),
      card('Failures', count(agg.failures), pct(agg.failure_ratio) + ' of requests', failures > 0 ? 'bad' : 'good'),
      card('Response time p95', rt ? ms(rt.p95) + ' ms' : DASH, rt ? 'p50 ' + ms(rt.p50) + ' · p99 ' + ms(rt.p99) + ' · max ' + ms(rt.max) + ' ms' : null),
    ];
    if (isSse(r)) {
      cards.push(card('Time to first event p95', ttfe ? ms(ttfe.p95) + ' ms' : DASH, ttfe ? 'p50 ' + ms(ttfe.p50) + ' · p99 ' + ms(ttfe.p99) + ' ms' : null));
      cards.push(card('Events', count(agg.events), rate(et.avg) + ' events/s on average, peak ' + rate(et.max)));
      cards.push(card('Concurrent streams', count(conn.max_concurrent), 'at peak; ' + num(conn.avg_active, 1) + ' on average, ' + count(conn.total_streams) + ' streams in all'));
    }
    cards.push(card(obj(r.arrivals) ? 'Users (in flight)' : 'Users', count(peakUsers || r.users), 'at peak; asked for ' + loadText(r)));
    cards.push(card('Duration', duration(r.duration_s), isRunning(r) ? 'so far' : 'stopped: ' + (r.stop_reason || DASH)));

    const warnings = arr(r.warnings).filter((w) => typeof w === 'string');
    const completeness = obj(r.completeness) ? r.completeness : null;
    const lost = completeness && completeness.verdict === 'incomplete' ? arr(completeness.reasons).filter((w) => typeof w === 'string') : null;
    return [
      h('div', { class: 'cards' }, cards),
      lost
        ? h('div', { class: 'callout callout-bad', role: 'alert', id: 'incomplete' }, [
            h('strong', null, 'Data incomplete (exit code 3): these figures miss data the workers recorded. '),
            h('ul', null, lost.map((w) => h('li', null, w))),
          ])
        : null,
      warnings.length
        ? h('div', { class: 'callout callout-warn', role: 'note', id: 'warnings' }, [
            h('strong', null, warnings.length === 1 ? 'Warning: ' : warnings.length + ' warnings: '),
            warnings.length === 1 ? warnings[0] : h('ul', null, warnings.map((w) => h('li', null, w))),
          ])
        : null,
    ];
  }

  function thresholds(r) {
    const rows = arr(r.thresholds).filter(obj);
    if (!rows.length) return null;
    return [
      note('Each threshold with the value observed over the run; a failed one makes the exit code 1.'),
      table(
        [
          { key: 'threshold', label: 'Threshold', cell: (t) => h('code', null, String(t.threshold)) },
          { key: 'observed', label: 'Observed', num: true, cell: (t) => (t.shown === undefined ? DASH : String(t.shown)) },
          {
            key: 'verdict',
            label: 'Verdict',
            cell: (t) => (t.passed ? badge('pass', 'pass') : badge(t.abort_on_fail ? 'FAIL (aborted the run)' : 'FAIL', 'fail')),
          },
        ],
        rows,
        { id: 'thresholds-table' }
      ),
    ];
  }

  function endpointTable(r) {
    const rows = endpoints(r);
    const agg = obj(r.aggregated);
    const rtc = (key) => (e) => pctl(e.response_time_ms, key);
    return [
      note('One row per endpoint (task name and method), then all of them together. Response times in milliseconds from the request start to the full response; for SSE, to the end of the stream. Rates are over the whole run.'),
      table(
        [
          { key: 'kind', label: 'Type', cell: (e) => (e === agg ? '' : kindBadge(e.kind)) },
          { key: 'method', label: 'Method', cell: (e) => String(e.method || '') },
          { key: 'name', label: 'Name', cell: (e) => String(e.name || '') },
          { key: 'requests', label: '# reqs', num: true, help: 'requests completed', cell: (e) => count(e.requests) },
          { key: 'failures', label: '# fails', num: true, help: 'requests failed', cell: (e) => count(e.failures) },
          { key: 'failure_ratio', label: 'fail %', num: true, cell: (e) => pct(e.failure_ratio) },
          { key: 'rps', label: 'req/s', num: true, cell: (e) => rate(e.rps) },
          { key: 'failures_per_s', label: 'fail/s', num: true, cell: (e) => rate(e.failures_per_s) },
          { key: 'avg', label: 'Avg', num: true, cell: rtc('avg') },
          { key: 'min', label: 'Min', num: true, cell: rtc('min') },
          { key: 'p50', label: 'Med', num: true, cell: rtc('p50') },
          { key: 'max', label: 'Max', num: true, cell: rtc('max') },
        ],
        rows,
        { id: 'endpoints-table', total: agg, rowAttrs: (e) => ({ 'data-method': e.method, 'data-name': e.name }) }
      ),
    ];
  }

  const PCT_COLUMNS = [
    ['p50', '50%'],
    ['p90', '90%'],
    ['p95', '95%'],
    ['p99', '99%'],
    ['p999', '99.9%'],
    ['max', '100%'],
  ];

  function percentileColumns(pick, countLabel) {
    return PCT_COLUMNS.map((c) => ({ key: c[0], label: c[1], num: true, cell: (e) => pctl(pick(e), c[0]) })).concat([
      { key: 'count', label: countLabel, num: true, cell: (e) => (obj(pick(e)) ? count(pick(e).count) : DASH) },
    ]);
  }

  function percentiles(r) {
    const rows = endpoints(r);
    if (!rows.length && !obj(r.aggregated)) return null;
    return [
      note('Response time percentiles in milliseconds, exact to 3 significant digits (merged HDR histograms, not averages of averages).'),
      table(
        [
          { key: 'method', label: 'Method', cell: (e) => String(e.method || '') },
          { key: 'name', label: 'Name', cell: (e) => String(e.name || '') },
        ].concat(percentileColumns((e) => e.response_time_ms, '# reqs')),
        rows,
        { id: 'percentiles-table', total: obj(r.aggregated) }
      ),
    ];
  }

  function sse(r) {
    if (!isSse(r)) return null;
    const rows = sseRows(r);
    const ttfe = obj(r.ttfe_ms);
    const et = obj(r.event_throughput) || {};
    const conn = obj(r.connections) || {};
    const qps = obj(r.qps) || {};
    return [
      h('h3', null, 'Time to first event (TTFE), ms'),
      note('From the request start to the first SSE event that is not a ping: how long a user waits before anything shows.'),
      table(
        [
          { key: 'method', label: 'Method', cell: (e) => String(e.method || '') },
          { key: 'name', label: 'Name', cell: (e) => String(e.name || '') },
        ].concat(percentileColumns((e) => e.ttfe_ms, '# streams')),
        rows,
        { id: 'ttfe-table' }
      ),
      h('h3', null, 'Streams (ms: p50 / p99)'),
      note('TTFT: to the first text chunk or message. Headers: to the response headers (what Locust would call the response time). Event gap and chunk gap: between consecutive events (pings included) and text chunks. Server elapsed: the elapsed_time dify-api reported.'),
      table(
        [
          { key: 'name', label: 'Name', cell: (e) => String(e.name || '') },
          { key: 'ttft', label: 'TTFT', num: true, cell: (e) => pair(e.ttft_ms) },
          { key: 'headers', label: 'Headers', num: true, cell: (e) => pair(e.time_to_headers_ms) },
          { key: 'stream', label: 'Duration', num: true, help: 'the whole stream', cell: (e) => pair(e.stream_duration_ms) },
          { key: 'event_gap', label: 'Event gap', num: true, cell: (e) => pair(e.event_gap_ms) },
          { key: 'chunk_gap', label: 'Chunk gap', num: true, cell: (e) => pair(e.chunk_gap_ms) },
          { key: 'server', label: 'Server', num: true, help: 'the elapsed_time dify-api reported', cell: (e) => pair(e.server_elapsed_ms) },
          { key: 'streams', label: 'Streams', num: true, help: 'started / completed', cell: (e) => count(e.streams_started) + ' / ' + count(e.streams_completed) },
          { key: 'events', label: 'Events', num: true, cell: (e) => count(e.events) },
          { key: 'tokens', label: 'Tokens/s', num: true, cell: (e) => rate(e.tokens_per_s) },
          { key: 'pings', label: 'Pings', num: true, cell: (e) => count(e.pings) },
          { key: '429', label: '429s', num: true, cell: (e) => count((e.too_many_requests || 0) + (e.rate_limit_errors || 0)) },
          { key: 'mib', label: 'MiB in', num: true, help: 'bytes received', cell: (e) => mib(e.bytes_received) },
        ],
        rows,
        { id: 'streams-table' }
      ),
      h('div', { class: 'facts-grid' }, [
        facts('Event throughput (events/s)', [
          ['Max', rate(et.max), 'the busiest second'],
          ['Avg', rate(et.avg), 'all events / run time'],
          ['Min', rate(et.min), 'the quietest second after the first event'],
        ]),
        facts('TTFE, all streams (ms)', [
          ['Avg', ttfe ? ms(ttfe.avg) : DASH],
          ['Min', ttfe ? ms(ttfe.min) : DASH],
          ['Max', ttfe ? ms(ttfe.max) : DASH],
          ['P50', ttfe ? ms(ttfe.p50) : DASH],
          ['P90', ttfe ? ms(ttfe.p90) : DASH],
          ['P95', ttfe ? ms(ttfe.p95) : DASH],
          ['P99', ttfe ? ms(ttfe.p99) : DASH],
        ]),
        facts('Connections', [
          ['Max concurrent', count(conn.max_concurrent), 'peak open streams within a second'],
          ['Avg active', num(conn.avg_active, 1), 'time-weighted average of open streams'],
          ['Total streams', count(conn.total_streams)],
          ['Connections opened', count(conn.connections_opened)],
          ['Retries', count(conn.retries || 0), 'sent again on a fresh connection: the server closed a kept-alive one before answering; not failures'],
        ]),
        facts('QPS', [
          ['Max QPS', rate(qps.max), 'the busiest second'],
          ['Avg QPS', rate(qps.avg)],
          ['Avg duration (ms)', ms(qps.avg_duration_ms)],
        ]),
      ]),
    ];
  }

  /** Dify endpoints: each workflow node's own time, then queueing and the stream's tail. */
  function whereTimeGoes(r) {
    const tables = arr(r.where_time_goes).filter(obj);
    if (!tables.length) return null;
    const share = (v, of) => (isNum(v) ? pct(v) + ' of ' + of : DASH);
    const out = [
      note('Per Dify endpoint, in workflow order: each node\'s own elapsed_time as Dify reports it, and its share of the workflow\'s time (sum over sum). Queueing (response headers to workflow_started: dify-api and Celery before the run) and the stream\'s tail (workflow_finished to the end of the body) are what the client waits for outside the nodes; their shares are of the response time.'),
    ];
    tables.forEach((t, i) => {
      const rows = arr(t.nodes).filter(obj).map((n) => ({
        label: String(n.title || ''),
        type: String(n.node_type || ''),
        p: n.elapsed_ms,
        count: n.count,
        failures: n.failures,
        tokens: n.tokens,
        share: share(n.share_of_workflow, 'workflow'),
      }));
      const wf = obj(t.workflow_ms);
      rows.push({ label: '(workflow)', type: '', p: t.workflow_ms, count: wf ? wf.count : 0, share: '' });
      [['(queueing)', t.queueing], ['(stream tail)', t.stream_tail]].forEach((x) => {
        const ph = obj(x[1]);
        if (ph) rows.push({ label: x[0], type: '', p: ph.elapsed_ms, count: obj(ph.elapsed_ms) ? ph.elapsed_ms.count : 0, share: share(ph.share_of_response, 'response') });
      });
      out.push(h('h3', null, String(t.method || '') + ' ' + String(t.name || '')));
      out.push(
        table(
          [
            { key: 'node', label: 'Node', cell: (x) => x.label },
            { key: 'type', label: 'Type', cell: (x) => (x.type ? h('code', null, x.type) : '') },
            { key: 'p50', label: 'p50 (ms)', num: true, cell: (x) => pctl(x.p, 'p50') },
            { key: 'p95', label: 'p95 (ms)', num: true, cell: (x) => pctl(x.p, 'p95') },
            { key: 'p99', label: 'p99 (ms)', num: true, cell: (x) => pctl(x.p, 'p99') },
            { key: 'count', label: 'Count', num: true, cell: (x) => count(x.count) },
            { key: 'failures', label: 'Failures', num: true, cell: (x) => (isNum(x.failures) ? count(x.failures) : '') },
            { key: 'tokens', label: 'Tokens', num: true, cell: (x) => (isNum(x.tokens) ? count(x.tokens) : '') },
            { key: 'share', label: 'Share', num: true, cell: (x) => x.share },
          ],
          rows,
          { id: 'nodes-table-' + i, cls: 'nodes-table' }
        )
      );
    });
    return out;
  }

  function business(r) {
    const rows = endpoints(r);
    if (!rows.some((e) => isNum(e.events_per_request) && e.events_per_request !== 1)) return null;
    return [
      note('Business events: successful requests times the task\'s events_per_request (a batch endpoint carries several).'),
      table(
        [
          { key: 'name', label: 'Name', cell: (e) => String(e.name || '') },
          { key: 'epr', label: 'Events per request', num: true, cell: (e) => (e === r.aggregated ? '' : count(e.events_per_request)) },
          { key: 'events', label: 'Business events', num: true, cell: (e) => count(e.business_events) },
          { key: 'per_s', label: 'per second', num: true, cell: (e) => rate(e.business_events_per_s) },
        ],
        rows,
        { id: 'business-table', total: obj(r.aggregated) }
      ),
    ];
  }

  /**
   * Goodput: per row whose tasks have goodput objectives (scenario `goodput = {..}`)
   * and Aggregated, the requests that met every objective, per second and as a share;
   * over time, good requests per second against all requests. Nothing without objectives.
   */
  function goodput(r, st) {
    const rows = endpoints(r).filter((e) => obj(e.goodput));
    const agg = obj(r.aggregated);
    if (!rows.length || !agg || !obj(agg.goodput)) return null;
    const g = (e) => obj(e.goodput);
    const parts = [
      note('A request is good when it succeeded and met every goodput objective of its task (ttfe, ttft, chunk_gap_p95, response_time). Rows without objectives show no goodput; the Aggregated share is of the rows with objectives.'),
      table(
        [
          { key: 'method', label: 'Method', cell: (e) => String(e.method || '') },
          { key: 'name', label: 'Name', cell: (e) => String(e.name || '') },
          { key: 'requests', label: '# reqs', num: true, help: 'requests the share is of', cell: (e) => count(g(e).requests) },
          { key: 'good', label: '# good', num: true, help: 'requests that met every objective', cell: (e) => count(g(e).good) },
          { key: 'per_s', label: 'good/s', num: true, help: 'goodput: good requests per second', cell: (e) => rate(g(e).per_s) },
          { key: 'share', label: 'good %', num: true, help: 'good share: good / requests', cell: (e) => pct(g(e).share) },
        ],
        rows,
        { id: 'goodput-table', total: agg, rowAttrs: (e) => ({ 'data-method': e.method, 'data-name': e.name }) }
      ),
    ];
    const full = isNum(r.duration_s) ? Math.floor(r.duration_s) : Infinity;
    const tl = arr(r.timeline).filter((p) => obj(p) && isNum(p.t) && isNum(p.good_per_s) && p.t < full).sort((a, b) => a.t - b.t);
    if (tl.length) {
      const grid = h('div', { class: 'chart-grid' });
      const series = (name, color, f) => ({ name: name, color: color, points: tl.map((p) => [p.t, f(p)]) });
      chartIn(st, grid, 'goodput', { title: 'Goodput per second', yTitle: 'per second', format: (v) => rate(v) + '/s', x: 'time', xTitle: 'time since start (m:ss)', xName: 'at' }, [
        series('good/s', COLORS.teal, (p) => p.good_per_s),
        series('req/s', COLORS.green, (p) => p.rps),
      ], { xMin: 0, xMax: tl[tl.length - 1].t });
      parts.push(grid);
    }
    return parts;
  }

  function failureTable(rows, id) {
    return table(
      [
        { key: 'count', label: 'Count', num: true, cell: (f) => count(f.count) },
        { key: 'method', label: 'Method', cell: (f) => String(f.method || '') },
        { key: 'name', label: 'Name', cell: (f) => String(f.name || '') },
        { key: 'kind', label: 'Kind', cell: (f) => h('code', null, String(f.kind || '')) },
        { key: 'detail', label: 'Detail', cell: (f) => String(f.detail || '') },
        { key: 'sample', label: 'Sample', cell: (f) => (f.sample ? h('pre', { class: 'sample' }, String(f.sample)) : DASH) },
      ],
      rows,
      { id: id }
    );
  }

  function failures(r) {
    const rows = arr(r.failures).filter(obj);
    if (!rows.length) return [note(isRunning(r) ? 'No failed request so far.' : 'No request failed.')];
    return [
      note('Failed requests by kind and detail, most frequent first, each with one sample message as the target sent it.'),
      failureTable(rows, 'failures-table'),
    ];
  }

  function outcomes(r) {
    const rows = arr(r.outcomes).filter(obj);
    if (!rows.length) return null;
    return [note('Not failures: statuses the scenario declared as expected, and requests cut short by the end of the run.'), failureTable(rows, 'outcomes-table')];
  }

  function arrivals(r) {
    const a = obj(r.arrivals);
    if (!a) return null;
    const agg = obj(r.aggregated) || {};
    const stages = arr(a.stages).filter(Array.isArray);
    return [
      note('The open model: iterations start on a schedule whatever the latency; latencies count from each arrival\'s due time. An arrival beyond the in-flight cap is dropped (and counted).'),
      h('div', { class: 'facts-grid' }, [
        facts('Arrivals', [
          ['Due by the schedule', count(a.due)],
          ['Requests started', count(agg.requests)],
          ['Dropped at the cap', count(a.dropped)],
          ['In-flight cap', count(a.max_in_flight)],
          obj(a.trace) ? null : ['Start rate (/s)', rate(a.start_rate)],
        ]),
        stages.length ? facts('Stages', stages.map((s, i) => ['#' + (i + 1) + ': ' + duration(s[0]), rate(s[1]) + ' /s'])) : null,
        arrivalSource(a),
      ]),
    ];
  }

  // Where the arrivals came from besides the rate: a seeded random process (the seed
  // repeats it) or a replayed trace.
  function arrivalSource(a) {
    const t = obj(a.trace);
    if (t) {
      return facts('Replayed trace', [
        ['File', String(t.file)],
        ['Arrivals in the trace', count(t.lines)],
        ['Span (s)', num(t.span_s, 3)],
      ]);
    }
    if (a.process == null) return null;
    const rows = [['Process', String(a.process)]];
    if (a.burstiness != null) rows.push(['Burstiness (gamma k)', num(a.burstiness, 2)]);
    if (a.seed != null) rows.push(['Seed (repeats the run)', String(a.seed)]);
    return facts('Arrival process', rows);
  }

  function drift(r) {
    const d = obj(r.drift);
    if (!d) return null;
    const span = (s) => (Array.isArray(s) ? count(s[0]) + '–' + count(s[1]) + ' s' : DASH);
    return [
      note('What a soak test looks for: the run\'s early third (after its first 10 %, the ramp) against its late third.'),
      table(
        [
          { key: 'figure', label: 'Figure', cell: (x) => String(x.figure) },
          { key: 'early', label: 'Early (' + span(d.early_s) + ')', num: true, cell: (x) => num(x.early, 2) },
          { key: 'late', label: 'Late (' + span(d.late_s) + ')', num: true, cell: (x) => num(x.late, 2) },
          {
            key: 'change',
            label: 'Change',
            num: true,
            cell: (x) => (isNum(x.change_pct) ? (x.change_pct > 0 ? '+' : '') + num(x.change_pct, 1) + ' %' : DASH),
          },
        ],
        arr(d.rows).filter(obj),
        { id: 'drift-table' }
      ),
    ];
  }

  function replicas(r) {
    const rows = arr(r.replicas).filter(obj);
    if (!rows.length) return null;
    return [
      note('Per target address, when the host resolved to several (a headless Service) or [resolve] listed several; every address has a row, zero included. Response times are of successful requests only, beside the failures by kind.'),
      table(
        [
          { key: 'peer', label: 'Address', cell: (x) => h('code', null, String(x.peer)) },
          { key: 'method', label: 'Method', cell: (x) => String(x.method || '') },
          { key: 'name', label: 'Name', cell: (x) => String(x.name || '') },
          { key: 'users', label: 'Users', num: true, cell: (x) => count(x.users) },
          { key: 'requests', label: '# reqs', num: true, cell: (x) => count(x.requests) },
          { key: 'failures', label: '# fails', num: true, cell: (x) => count(x.failures) },
          { key: 'rps', label: 'req/s', num: true, cell: (x) => rate(x.rps) },
          { key: 'ok50', label: 'OK RT p50', num: true, cell: (x) => pctl(x.response_time_ok_ms, 'p50') },
          { key: 'ok95', label: 'OK RT p95', num: true, cell: (x) => pctl(x.response_time_ok_ms, 'p95') },
          { key: 'ttfe50', label: 'TTFE p50', num: true, cell: (x) => pctl(x.ttfe_ms, 'p50') },
          {
            key: 'kinds',
            label: 'Failures by kind',
            cell: (x) =>
              arr(x.failure_kinds)
                .filter(obj)
                .map((k) => [k.kind, k.detail, count(k.count)].filter((v) => v !== '' && v != null).join(' '))
                .join(', '),
          },
        ],
        rows,
        { id: 'replicas-table' }
      ),
    ];
  }

  function workers(r) {
    const rows = arr(r.workers).filter(obj);
    if (!rows.length) return null;
    return [
      note('The load generators. A worker above 90 % CPU or whose timers fire over 5 ms late adds its own delay to the latencies it measures.'),
      table(
        [
          { key: 'index', label: '#', num: true, cell: (w) => count(w.index) },
          { key: 'id', label: 'Id', cell: (w) => String(w.id || '') },
          { key: 'host', label: 'Host', cell: (w) => String(w.hostname || '') },
          { key: 'cores', label: 'Cores', num: true, cell: (w) => count(w.cores) },
          { key: 'reports', label: 'Reports', num: true, cell: (w) => count(w.reports) },
          { key: 'final', label: 'Final report', cell: (w) => (w.final_report ? 'yes' : isRunning(r) ? DASH : badge('no', 'warn')) },
          { key: 'cpu', label: 'CPU max', num: true, help: 'the process, percent of one core (up to 100 x cores)', cell: (w) => (isNum(w.cpu_max_percent) ? num(w.cpu_max_percent, 0) + ' %' : DASH) },
          {
            key: 'thread',
            label: 'Busiest thread',
            num: true,
            help: 'the busiest load thread (one event loop), percent of one core: above 90 % its users wait',
            cell: (w) => (isNum(w.thread_cpu_max_percent) ? h('span', { class: w.thread_cpu_max_percent > 90 ? 'bad' : null }, num(w.thread_cpu_max_percent, 0) + ' %') : DASH),
          },
          { key: 'rss', label: 'RSS MiB', num: true, cell: (w) => mib(w.rss_bytes) },
          {
            key: 'lag',
            label: 'Timer lag ms',
            num: true,
            help: 'worst p99 lateness of the worker\'s timers in any second',
            cell: (w) => (isNum(w.sched_lag_max_ms) ? h('span', { class: w.sched_lag_max_ms > 5 ? 'bad' : null }, num(w.sched_lag_max_ms, 1)) : DASH),
          },
          { key: 'status', label: 'Status', cell: (w) => (w.lost ? badge('LOST', 'fail') : badge('ok', 'pass')) },
        ],
        rows,
        { id: 'workers-table' }
      ),
    ];
  }

  function clusterEvents(r) {
    const rows = arr(r.events).filter((e) => typeof e === 'string');
    if (!rows.length) return null;
    return [note('Workers joining, leaving, lost and rebalanced, with the second of the run.'), h('pre', { class: 'events' }, rows.join('\n'))];
  }

  function hunt(r, st) {
    const hr = obj(r.hunt);
    if (!hr) return null;
    const level = hr.level === 'arrivals/s' ? 'arrivals/s' : 'users';
    const steps = arr(hr.steps).filter(obj);
    const capacity =
      isNum(hr.sustainable_users) && isNum(hr.sustainable_rps)
        ? count(hr.sustainable_users) + ' ' + level + ' (' + rate(hr.sustainable_rps) + ' req/s)'
        : 'none: the first step already broke an SLO';
    const grid = h('div', { class: 'chart-grid' });
    const out = [
      facts(null, [
        ['Sustainable capacity', capacity, 'the highest level that met every SLO'],
        huntRemeasure(obj(hr.remeasure), level),
        huntConfidence(obj(hr.confidence), level),
        huntMargin(obj(hr.margin_shape)),
        isNum(hr.first_bad_users) ? ['First bad level', count(hr.first_bad_users) + ' ' + level] : null,
        hr.broke_first ? ['Broke first', String(hr.broke_first)] : null,
        isNum(hr.knee_users) ? ['Knee (throughput peaked)', count(hr.knee_users) + ' ' + level] : null,
        isNum(hr.little_ratio) ? ["Little's law at the sustainable level", num(hr.little_ratio, 2), 'observed / expected throughput, users / (response time + wait)'] : null,
        ['Search ended', String(hr.ended || DASH)],
        huntSearch(obj(hr.search), steps),
        ['Generators', h('span', null, [hr.valid === false ? badge('not valid', 'fail') : badge('valid', 'pass'), ' ', String(hr.validity || '')])],
      ]),
      grid,
    ];
    const sorted = steps.slice().sort((a, b) => a.users - b.users);
    const at = (f) => sorted.map((s) => [s.users, isNum(f(s)) ? f(s) : null]);
    const vlines = [];
    if (isNum(hr.sustainable_users)) vlines.push({ x: hr.sustainable_users, label: 'sustainable', color: COLORS.green });
    if (isNum(hr.first_bad_users)) vlines.push({ x: hr.first_bad_users, label: 'first bad', color: COLORS.red });
    if (isNum(hr.knee_users) && hr.knee_users !== hr.sustainable_users) vlines.push({ x: hr.knee_users, label: 'knee', color: COLORS.amber });
    const xTitle = level === 'users' ? 'load level (users)' : 'load level (arrivals/s)';
    chartIn(st, grid, 'hunt-throughput', { title: 'Throughput against load', x: 'number', xTitle: xTitle, xName: level + ':', yTitle: 'requests/s', format: (v) => rate(v) + ' req/s' }, [
      { name: 'req/s', color: COLORS.blue, points: at((s) => s.rps) },
      { name: "Little's law expects", color: COLORS.slate, dash: true, points: at((s) => s.little_rps) },
    ], { vlines: vlines });
    chartIn(st, grid, 'hunt-latency', { title: 'Latency against load', x: 'number', xTitle: xTitle, xName: level + ':', yTitle: 'latency (ms)', format: (v) => ms(v) + ' ms' }, [
      { name: 'TTFE p50', color: COLORS.teal, points: at((s) => s.ttfe_p50_ms) },
      { name: 'TTFE p95', color: COLORS.purple, points: at((s) => s.ttfe_p95_ms) },
      { name: 'TTFE p99', color: COLORS.red, points: at((s) => s.ttfe_p99_ms) },
      { name: 'response time p50', color: COLORS.blue, dash: true, points: at((s) => s.response_time_p50_ms) },
      { name: 'response time p95', color: COLORS.orange, dash: true, points: at((s) => s.response_time_p95_ms) },
    ].filter((s) => s.points.some((p) => p[1] !== null)), { vlines: vlines });
    chartIn(st, grid, 'hunt-errors', { title: 'Errors and generator CPU against load', x: 'number', xTitle: xTitle, xName: level + ':', yTitle: 'percent (%)', format: (v) => num(v, 2) + ' %' }, [
      { name: 'error rate', color: COLORS.red, points: at((s) => (isNum(s.error_rate) ? s.error_rate * 100 : null)) },
      { name: 'busiest load thread CPU', color: COLORS.slate, dash: true, points: at((s) => s.worker_cpu_max) },
    ], { vlines: vlines });
    const opt = (v) => (isNum(v) ? ms(v) : DASH);
    out.push(
      table(
        [
          { key: 'level', label: level === 'users' ? 'Users' : 'Arrivals/s', num: true, cell: (s) => count(s.users) + (s.remeasure ? ' (re-measure)' : s.bisecting ? ' (bisect)' : '') },
          { key: 'seconds', label: 'Seconds judged', num: true, cell: (s) => count(s.from_s) + '–' + count(s.to_s) },
          { key: 'rps', label: 'req/s', num: true, cell: (s) => rate(s.rps) },
          { key: 'eps', label: 'events/s', num: true, cell: (s) => rate(s.events_per_s) },
          { key: 't50', label: 'TTFE p50', num: true, cell: (s) => opt(s.ttfe_p50_ms) },
          { key: 't95', label: 'TTFE p95', num: true, cell: (s) => opt(s.ttfe_p95_ms) },
          { key: 't99', label: 'TTFE p99', num: true, cell: (s) => opt(s.ttfe_p99_ms) },
          { key: 'rt95', label: 'RT p95', num: true, cell: (s) => opt(s.response_time_p95_ms) },
          { key: 'err', label: 'Errors', num: true, cell: (s) => pct(s.error_rate) },
          { key: '429', label: '429s', num: true, cell: (s) => count(s.status_429) },
          { key: 'little', label: 'Little req/s', num: true, help: "the throughput Little's law expects", cell: (s) => rate(s.little_rps) },
          { key: 'cpu', label: 'Busiest thread CPU', num: true, cell: (s) => (isNum(s.worker_cpu_max) ? num(s.worker_cpu_max, 0) + ' %' : DASH) },
          {
            key: 'verdict',
            label: 'Verdict',
            cell: (s) =>
              s.verdict === 'slo'
                ? h('span', null, [badge('SLO broken', 'fail'), ' ', arr(s.broken).join('; ')])
                : s.verdict === 'stall'
                  ? badge('throughput stalled', 'warn')
                  : badge('ok', 'pass'),
          },
          steps.some((s) => obj(s.stop)) ? { key: 'stop', label: 'Step ended', help: 'stable: the 95 % half-width of its per-second p95 fell under --stable-within; max: it ran to --step-time', cell: stepEnd } : null,
        ].filter(Boolean),
        steps,
        { id: 'hunt-table' }
      )
    );
    const nodeRows = arr(hr.node_steps).filter(obj);
    if (nodeRows.length) {
      const grew = arr(hr.nodes_grew).filter(obj);
      out.push(h('h3', null, 'Where the time goes per level'));
      if (grew.length) {
        out.push(
          note(
            'Nodes whose p95 grew fastest up to the first bad level: ' +
              grew.map((g) => String(g.title) + ' (' + String(g.node_type) + ') ' + ms(g.first_p95_ms) + ' → ' + ms(g.bad_p95_ms) + ' ms (×' + num(g.ratio, 1) + ')').join('; ')
          )
        );
      }
      out.push(
        table(
          [
            { key: 'level', label: 'Level', num: true, cell: (n) => count(n.level) },
            { key: 'node', label: 'Node', cell: (n) => String(n.title || '') },
            { key: 'type', label: 'Type', cell: (n) => h('code', null, String(n.node_type || '')) },
            { key: 'count', label: 'Count', num: true, cell: (n) => count(n.count) },
            { key: 'failures', label: 'Failures', num: true, cell: (n) => count(n.failures) },
            { key: 'p50', label: 'p50 (ms)', num: true, cell: (n) => pctl(n.elapsed_ms, 'p50') },
            { key: 'p95', label: 'p95 (ms)', num: true, cell: (n) => pctl(n.elapsed_ms, 'p95') },
            { key: 'p99', label: 'p99 (ms)', num: true, cell: (n) => pctl(n.elapsed_ms, 'p99') },
          ],
          nodeRows,
          { id: 'hunt-nodes-table' }
        )
      );
    }
    out.unshift(note('The load stepped up until a step broke an SLO or throughput stopped growing; each step is judged on its own seconds after a warm-up.'));
    return out;
  }

  /** How a hunt step ended: stable after N s, or at the maximum (absent in older files). */
  function stepEnd(s) {
    const st = obj(s.stop);
    if (!st) return DASH;
    const hw = isNum(st.half_width) ? ' (±' + num(st.half_width * 100, 1) + ' %)' : '';
    return st.stable
      ? h('span', null, [badge('stable', 'pass'), ' after ' + num(st.after_s, 0) + ' s' + hw])
      : h('span', null, [badge('max', 'warn'), ' ' + num(st.after_s, 0) + ' s' + hw]);
  }

  /** The boundary's second measurement (absent in older files and with --no-remeasure). */
  function huntRemeasure(r, level) {
    if (!r) return null;
    return [
      'Boundary re-measured',
      h('span', null, [
        r.confirmed ? badge('confirmed', 'pass') : badge('not confirmed', 'fail'),
        ' ' + count(r.level) + ' ' + level + ' again' +
          (r.confirmed ? '' : isNum(r.moved_to) ? ': the sustainable level moves down to ' + count(r.moved_to) + ' ' + level : ': no lower level was good'),
      ]),
      String(r.slo || '') + ': ' + String(r.shown || '') + (r.confirmed ? '; the verdict pools both measurements' : ''),
    ];
  }

  /** The search's kind, probes and stop rule (absent in older files). */
  function huntSearch(s, steps) {
    if (!s) return null;
    const stable = steps.filter((x) => obj(x.stop) && x.stop.stable).length;
    return [
      'Search',
      String(s.kind) + (s.kind === 'geometric' ? ' ×' + num(s.growth, 0) + ' per climbing step, to within ' + String(s.resolution) : '') +
        '; ' + count(s.probes) + ' of ' + count(s.budget) + ' probes',
      'steps ' + String(s.stop_rule || '') + ': ' + count(stable) + ' of ' + count(steps.length) + ' ended stable',
    ];
  }

  /** The sustainable level's key SLO with its bootstrap interval (absent in older files). */
  function huntConfidence(c, level) {
    if (!c) return null;
    const confident = c.call === 'confident';
    return [
      'Confidence',
      h('span', null, [
        confident ? badge('confident', 'pass') : badge('marginal', 'warn'),
        ' ' + String(c.slo || '') + ' at ' + count(c.level) + ' ' + level + ': ' + String(c.shown || '') +
          '; margin to the limit ' + pct(c.margin) + ' (' + pct(c.margin_low) + ' to ' + pct(c.margin_high) + ')',
      ]),
      (confident ? 'the whole interval meets the SLO' : 'the interval crosses the limit') +
        '; 95 % percentile bootstrap, ' + count(c.resamples) + ' resamples of the step\'s ' + count(c.seconds) + ' seconds',
    ];
  }

  /** Cliff or knee: how the key SLO's margin fell over the levels (absent in older files). */
  function huntMargin(m) {
    if (!m) return null;
    return [
      'SLO margin',
      h('span', null, [
        badge(String(m.call), m.call === 'cliff' ? 'warn' : 'pass'),
        ' ' + String(m.slo || '') + ': ' + pct(m.first_margin) + ' at the first level, ' + pct(m.last_good_margin) +
          ' at the last good one (' + pct(m.kept) + ' kept)',
      ]),
      'a cliff keeps more than half of the first margin up to the break; a knee uses it up step by step',
    ];
  }

  // ---------------------------------------------------------------- charts

  /** Creates the chart `id` inside `parent` once, then only updates it. */
  function chartIn(st, parent, id, options, series, extra) {
    let c = st.charts.get(id);
    if (!c) {
      const box = h('div', { class: 'chart-card', id: 'chart-' + id });
      c = { box: box, chart: global.BarrageChart.create(box, options) };
      st.charts.set(id, c);
    }
    parent.appendChild(c.box);
    // Drawn once the section is in the page, so the chart knows its width.
    st.pending.push(() => c.chart.update(series, extra));
    return c;
  }

  /** Latency percentiles of a second: 0 means no sample that second, a gap. */
  function latency(v) {
    return isNum(v) && v > 0 ? v : null;
  }

  function charts(r, st) {
    // The run's full seconds: the last, partial one would show every rate falling.
    const full = isNum(r.duration_s) ? Math.floor(r.duration_s) : Infinity;
    let tl = arr(r.timeline)
      .filter((p) => obj(p) && isNum(p.t))
      .sort((a, b) => a.t - b.t);
    if (tl.some((p) => p.t < full)) tl = tl.filter((p) => p.t < full);
    const last = tl.length ? tl[tl.length - 1].t : 0;
    const extra = { xMin: 0, xMax: last };
    const series = (name, color, f, dash) => ({ name: name, color: color, dash: dash, points: tl.map((p) => [p.t, f(p)]) });
    const has = (key) => tl.some((p) => key in p);
    const time = { x: 'time', xTitle: 'time since start (m:ss)', xName: 'at' };
    const grid = h('div', { class: 'chart-grid' });
    chartIn(st, grid, 'users', Object.assign({ title: 'Users', yTitle: 'users', format: (v) => num(v, 1) }, time), [
      series('users', COLORS.blue, (p) => p.users),
    ], extra);
    chartIn(st, grid, 'rps', Object.assign({ title: 'Requests and failures per second', yTitle: 'per second', format: (v) => rate(v) + '/s' }, time), [
      series('req/s', COLORS.green, (p) => p.rps),
      series('failures/s', COLORS.red, (p) => p.failures_per_s),
    ], extra);
    const rt = [
      series('p50', COLORS.blue, (p) => (p.rps > 0 ? latency(p.response_time_p50_ms) : null)),
      series('p95', COLORS.orange, (p) => (p.rps > 0 ? latency(p.response_time_p95_ms) : null)),
    ];
    if (has('response_time_p99_ms')) rt.push(series('p99', COLORS.red, (p) => (p.rps > 0 ? latency(p.response_time_p99_ms) : null)));
    chartIn(st, grid, 'response-time', Object.assign({ title: 'Response time percentiles', yTitle: 'response time (ms)', format: (v) => ms(v) + ' ms' }, time), rt, extra);
    if (isSse(r)) {
      const tt = [
        series('p50', COLORS.teal, (p) => latency(p.ttfe_p50_ms)),
        series('p95', COLORS.purple, (p) => latency(p.ttfe_p95_ms)),
      ];
      if (has('ttfe_p99_ms')) tt.push(series('p99', COLORS.red, (p) => latency(p.ttfe_p99_ms)));
      chartIn(st, grid, 'ttfe', Object.assign({ title: 'Time to first event (TTFE) percentiles', yTitle: 'TTFE (ms)', format: (v) => ms(v) + ' ms' }, time), tt, extra);
      chartIn(st, grid, 'streams', Object.assign({ title: 'Open SSE streams', yTitle: 'streams', format: (v) => num(v, 1) }, time), [
        series('average in the second', COLORS.blue, (p) => p.active_streams),
        series('peak in the second', COLORS.slate, (p) => p.active_streams_max, true),
      ], extra);
      chartIn(st, grid, 'events', Object.assign({ title: 'Events and new streams per second', yTitle: 'per second', format: (v) => rate(v) + '/s' }, time), [
        series('events/s', COLORS.purple, (p) => p.events_per_s),
        series('new streams/s', COLORS.teal, (p) => p.streams_per_s),
      ], extra);
    }
    return [
      note('Per second of the run, cluster-wide. Percentiles are those of each second. Hover a chart for its values; click a legend entry to hide a line.'),
      grid,
    ];
  }

  // ---------------------------------------------------------------- percentile spectrum

  /** The spectrum's metrics in the order they are offered, with their names and colours. */
  const SPECTRUM_METRICS = [
    ['response_time', 'response time', COLORS.blue],
    ['ttfe', 'TTFE', COLORS.purple],
    ['ttft', 'TTFT', COLORS.teal],
    ['time_to_headers', 'time to headers', COLORS.green],
    ['stream_duration', 'stream duration', COLORS.orange],
    ['event_gap', 'event gap', COLORS.amber],
    ['chunk_gap', 'chunk gap', COLORS.slate],
    ['server_elapsed', 'server elapsed', COLORS.red],
    ['response_time_ok', 'response time (successes)', '#db2777'],
    ['queueing', 'queueing', '#0891b2'],
    ['stream_tail', 'stream tail', '#65a30d'],
  ];
  /** The percentiles the "nines" axis marks: x = -log10(1 - p). */
  const NINES = [[0, '0%'], [1, '90%'], [2, '99%'], [3, '99.9%'], [4, '99.99%'], [5, '99.999%']];
  const ROW_COLORS = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#0891b2', '#ca8a04', '#db2777', '#475569', '#dc2626', '#65a30d'];

  /** A percentile (0 to 99.999) on the nines axis. */
  function nines(p) {
    return -Math.log10(Math.max(1e-9, 1 - p / 100));
  }

  /** A nines-axis x back to its percentile, as people write it (99.9 %). */
  function percentileOf(x) {
    const p = 100 * (1 - Math.pow(10, -x));
    return num(Number(p.toPrecision(Math.max(3, Math.ceil(x) + 3))), 4).replace(/\.?0+$/, '') + ' %';
  }

  function rowLabel(row) {
    return (row.method ? row.method + ' ' : '') + String(row.name || '');
  }

  function lineOf(row, metric) {
    return arr(row.lines).find((l) => obj(l) && l.metric === metric);
  }

  function linePoints(line) {
    return arr(line && line.points)
      .filter((p) => Array.isArray(p) && isNum(p[0]) && isNum(p[1]))
      .map((p) => [nines(p[0]), p[1]]);
  }

  /**
   * The views the selector offers: each row with every metric it has ("row:" and its
   * label), then each metric across the endpoint rows ("metric:" and its name).
   */
  function spectrumViews(rows) {
    const views = rows.map((row) => ({ key: 'row:' + rowLabel(row), group: 'row', label: rowLabel(row), row: row }));
    const endpointsRows = rows.slice(1);
    for (const m of SPECTRUM_METRICS) {
      const having = endpointsRows.filter((row) => lineOf(row, m[0]));
      if (having.length) views.push({ key: 'metric:' + m[0], group: 'metric', label: m[1] + ', every endpoint', metric: m, rows: having });
    }
    return views;
  }

  function spectrumSeries(view) {
    if (view.group === 'row') {
      return SPECTRUM_METRICS.filter((m) => lineOf(view.row, m[0])).map((m) => ({
        name: m[1],
        color: m[2],
        points: linePoints(lineOf(view.row, m[0])),
      }));
    }
    return view.rows.map((row, i) => ({
      name: rowLabel(row),
      color: ROW_COLORS[i % ROW_COLORS.length],
      points: linePoints(lineOf(row, view.metric[0])),
    }));
  }

  function spectrum(r, st) {
    const rows = arr(r.spectrum).filter((row) => obj(row) && arr(row.lines).length);
    if (!rows.length) return null;
    const views = spectrumViews(rows);
    const view = views.find((v) => v.key === st.spectrumView) || views[0];
    st.spectrumView = view.key;
    const extra = { xMin: 0, xMax: NINES[NINES.length - 1][0] };
    const options = {
      title: 'Latency by percentile (HdrHistogram spectrum)',
      x: 'number',
      xTicks: NINES,
      xFormat: percentileOf,
      xTitle: 'percentile (log "nines" scale)',
      xName: 'at',
      yLog: true,
      yTitle: 'latency (ms, log scale)',
      format: (v) => ms(v) + ' ms',
      height: 300,
    };
    const wrap = h('div', { class: 'spectrum' });
    const c = chartIn(st, wrap, 'spectrum', options, spectrumSeries(view), extra);
    const select = h('select', { id: 'spectrum-view', 'aria-label': 'which latencies to draw' }, [
      h('optgroup', { label: 'One row, every metric' }, views.filter((v) => v.group === 'row').map((v) => h('option', { value: v.key, selected: v === view ? 'selected' : null }, v.label))),
      h('optgroup', { label: 'One metric, every endpoint' }, views.filter((v) => v.group === 'metric').map((v) => h('option', { value: v.key, selected: v === view ? 'selected' : null }, v.label))),
    ]);
    select.value = view.key;
    select.addEventListener('change', () => {
      const chosen = views.find((v) => v.key === select.value);
      if (!chosen) return;
      st.spectrumView = chosen.key;
      c.chart.update(spectrumSeries(chosen), extra);
    });
    wrap.insertBefore(h('label', { class: 'spectrum-pick' }, ['Show ', select]), c.box);
    return [
      note('The latency under which each percentile of the samples fell, from the median to the slowest in 100,000: the farther right, the rarer. Exact to the HDR histograms\' 3 significant digits, over the whole run. Pick a row (every metric) or a metric (every endpoint); click a legend entry to hide a line.'),
      wrap,
    ];
  }

  function glossary() {
    const terms = [
      ['# reqs, # fails', 'requests completed and failed; a failure is counted by kind (see Failures).'],
      ['Response time', 'request start to the full response; for SSE, to the terminal event (the end of the stream).'],
      ['TTFE', 'time to first event: request start to the first SSE event that is not a ping.'],
      ['TTFT', 'time to first token: to the first text_chunk / message / agent_message event.'],
      ['Percentiles', 'p50 is the median, p95 the time 95 % of requests stayed under. Exact to 3 significant digits.'],
      ['Percentile spectrum', 'every percentile from 0 to 99.999 % on a "nines" axis (90 %, 99 %, 99.9 % equally spaced), as HdrHistogram draws it: a line that rises steeply on the right is a long tail.'],
      ['req/s, failures/s', 'over the whole run time; the charts show each second.'],
      ['Event throughput', 'SSE events per second over the run\'s per-second timeline (avg = all events / run time).'],
      ['Max concurrent / avg active', 'peak open SSE streams within a second (sum of each worker\'s peak), and the time-weighted average.'],
      ['429s', 'too_many_requests (the app\'s concurrency limit) plus rate_limit_error (the plan\'s quota).'],
      ['Other outcomes', 'not failures: declared expected statuses, and requests cut by the end of the run.'],
      ['Goodput', 'requests that succeeded and met every goodput objective of their task, per second and as a share of the requests of the rows with objectives.'],
      ['Workers', 'the load generators: a saturated one (CPU > 90 %, timers late) adds its own delay to latencies.'],
    ];
    return h('dl', { class: 'glossary' }, terms.map((t) => [h('dt', null, t[0]), h('dd', null, t[1])]));
  }

  // ---------------------------------------------------------------- page

  const SECTIONS = [
    { id: 'summary', title: 'Summary', build: summary },
    { id: 'thresholds', title: 'Thresholds', build: thresholds },
    { id: 'hunt', title: 'Breaking-point hunt', build: hunt },
    { id: 'spectrum', title: 'Latency by percentile', build: spectrum },
    { id: 'charts', title: 'Over time', build: charts },
    { id: 'endpoints', title: 'Requests', build: endpointTable },
    { id: 'percentiles', title: 'Response time percentiles', build: percentiles },
    { id: 'sse', title: 'Server-Sent Events', build: sse },
    { id: 'nodes', title: 'Where the time goes', build: whereTimeGoes },
    { id: 'business', title: 'Business events', build: business },
    { id: 'goodput', title: 'Goodput', build: goodput },
    { id: 'failures', title: 'Failures', build: failures },
    { id: 'outcomes', title: 'Other outcomes', build: outcomes },
    { id: 'arrivals', title: 'Open model', build: arrivals },
    { id: 'drift', title: 'Drift', build: drift },
    { id: 'replicas', title: 'Per replica', build: replicas },
    { id: 'workers', title: 'Workers', build: workers },
    { id: 'events', title: 'Cluster events', build: clusterEvents },
    { id: 'glossary', title: 'How to read this report', build: glossary },
  ];

  const STATE = new WeakMap();

  function skeleton(root) {
    const st = { charts: new Map(), sections: new Map(), pending: [] };
    root.classList.add('barrage-report');
    while (root.firstChild) root.removeChild(root.firstChild);
    st.title = h('h1', null, 'Barrage load test report');
    st.badge = h('span', { class: 'verdict' });
    st.meta = h('p', { class: 'meta' });
    root.appendChild(h('header', { class: 'page-head' }, [h('div', { class: 'title-row' }, [st.title, st.badge]), st.meta]));
    st.toc = h('nav', { class: 'toc', 'aria-label': 'sections' });
    root.appendChild(st.toc);
    for (const s of SECTIONS) {
      const body = h('div', { class: 'section-body' });
      const el = h('section', { id: s.id, class: 'section' }, [h('h2', null, s.title), body]);
      root.appendChild(el);
      st.sections.set(s.id, { el: el, body: body, link: h('a', { href: '#' + s.id }, s.title) });
    }
    root.appendChild(h('footer', { class: 'page-foot' }, 'Barrage · report schema barrage.report.v1'));
    return st;
  }

  /** A part that threw shows why instead of taking the page down with it. */
  function failed(e) {
    return h('p', { class: 'render-error' }, 'This part of the report could not be shown: ' + (e && e.message ? e.message : String(e)));
  }

  function render(root, report, options) {
    const r = obj(report) || {};
    options = options || {};
    let st = STATE.get(root);
    if (!st) {
      st = skeleton(root);
      STATE.set(root, st);
    }
    st.title.textContent = options.title ? String(options.title) : 'Barrage load test report';
    while (st.badge.firstChild) st.badge.removeChild(st.badge.firstChild);
    st.badge.appendChild(verdict(r));
    while (st.meta.firstChild) st.meta.removeChild(st.meta.firstChild);
    add(st.meta, [
      'Scenario ',
      h('strong', null, String(r.scenario || DASH)),
      ' against ',
      h('strong', null, r.host ? String(r.host) : 'the hosts of the scenario'),
      ' · ' + loadText(r) + ' · ' + duration(r.duration_s) + (isRunning(r) ? ' so far' : ', stopped: ' + (r.stop_reason || DASH)),
    ]);
    while (st.toc.firstChild) st.toc.removeChild(st.toc.firstChild);
    for (const s of SECTIONS) {
      const sec = st.sections.get(s.id);
      // Tables scrolled sideways stay where the reader left them across updates.
      const scrolls = Array.from(sec.body.querySelectorAll('.table-wrap')).map((w) => w.scrollLeft);
      while (sec.body.firstChild) sec.body.removeChild(sec.body.firstChild);
      let content;
      st.pending = [];
      try {
        content = s.build(r, st);
      } catch (e) {
        content = failed(e);
      }
      const empty = content === null || content === undefined || (Array.isArray(content) && content.length === 0);
      sec.el.hidden = empty;
      if (empty) continue;
      add(sec.body, content);
      try {
        for (const draw of st.pending.splice(0)) draw();
      } catch (e) {
        add(sec.body, failed(e));
      }
      Array.from(sec.body.querySelectorAll('.table-wrap')).forEach((w, i) => {
        if (scrolls[i]) w.scrollLeft = scrolls[i];
      });
      if (s.id !== 'summary') st.toc.appendChild(sec.link);
    }
    // Charts whose section part no longer applies are dropped.
    for (const [id, c] of st.charts) {
      if (!c.box.isConnected) {
        c.chart.destroy();
        st.charts.delete(id);
      }
    }
    return st;
  }

  global.BarrageReport = {
    render: render,
    format: { count: count, ms: ms, rate: rate, pct: pct, duration: duration },
  };
})(window);
