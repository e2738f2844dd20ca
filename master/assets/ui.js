/* Barrage web UI: the master's live page (GET /). Everything it shows and does goes
 * through the JSON API documented in the README, so anything done here can be scripted:
 *
 *   GET  /api/state     phase, load, workers          (polled every 2 s)
 *   GET  /api/stats     the report so far             (polled every 2 s, drawn by report.js)
 *   POST /api/start     {users, spawn_rate, host?, run_time_s?}   (--start-from-ui)
 *   POST /api/target    {users, spawn_rate} or {arrival_rate}
 *   POST /api/reset     statistics start again
 *   POST /api/stop      stop the run (after it: close the master)
 *   GET  /api/download/{report.json,report.html,stats.csv,failures.csv}
 *
 * POST calls carry X-Barrage-Token: the page has it when served to a loopback address
 * without --web-auth; otherwise the user pastes it once (kept for the browser tab).
 */
(function () {
  'use strict';

  var POLL_MS = 2000;
  var tokenMeta = document.querySelector('meta[name="barrage-token"]');
  var token = (tokenMeta && tokenMeta.content) || sessionStorage.getItem('barrage-token') || '';
  var last = { state: null };

  function $(id) {
    return document.getElementById(id);
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function say(text, isError) {
    var el = $('ui-message');
    el.textContent = text;
    el.className = isError ? 'error' : '';
  }

  function headers(json) {
    var h = {};
    if (token) h['X-Barrage-Token'] = token;
    if (json) h['Content-Type'] = 'application/json';
    return h;
  }

  function call(method, path, body) {
    return fetch(path, {
      method: method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try {
          data = text ? JSON.parse(text) : null;
        } catch (e) {
          data = null;
        }
        if (r.status === 401) {
          show('token-form', true);
          throw new Error('the master wants its token (X-Barrage-Token): paste it above');
        }
        if (!r.ok) throw new Error((data && data.error) || r.status + ' ' + r.statusText);
        return data;
      });
    });
  }

  function number(id) {
    var v = $(id).value.trim();
    return v === '' ? null : Number(v);
  }

  function fmtDuration(s) {
    if (typeof s !== 'number' || !isFinite(s)) return '—';
    s = Math.max(0, Math.floor(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var mm = (m < 10 ? '0' : '') + m, ss = (sec < 10 ? '0' : '') + sec;
    return (h ? h + ':' + mm : m) + ':' + ss;
  }

  function fmtBytes(b) {
    if (typeof b !== 'number' || !b) return '—';
    var mib = b / (1024 * 1024);
    return mib >= 1024 ? (mib / 1024).toFixed(2) + ' GiB' : mib.toFixed(1) + ' MiB';
  }

  function cell(row, text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function drawWorkers(workers) {
    var body = $('ui-workers-body');
    body.textContent = '';
    workers.forEach(function (w) {
      var tr = document.createElement('tr');
      tr.dataset.worker = w.id;
      cell(tr, w.id);
      cell(tr, w.hostname);
      cell(tr, w.state, 'state-' + w.state);
      cell(tr, String(w.users), 'num');
      // The process (percent of one core), and its busiest load thread: saturation.
      var thread = typeof w.thread_cpu_percent === 'number' ? w.thread_cpu_percent : 0;
      cell(tr, w.cpu_percent.toFixed(1) + ' % (thread ' + thread.toFixed(0) + ' %)', thread > 90 ? 'num bad' : 'num');
      cell(tr, fmtBytes(w.rss_bytes), 'num');
      cell(tr, w.last_report_age_s === null ? '—' : w.last_report_age_s.toFixed(1) + ' s', 'num');
      body.appendChild(tr);
    });
    $('ui-workers-count').textContent = String(workers.length);
  }

  function drawState(s) {
    last.state = s;
    var phase = s.state;
    $('ui-phase').textContent = phase;
    $('ui-phase').className = 'phase phase-' + phase;
    $('ui-scenario').textContent = s.scenario || '';
    $('ui-host').textContent = s.host || '(scenario hosts)';
    $('ui-users').textContent = s.live_users + ' / ' + s.users;
    $('ui-elapsed').textContent = fmtDuration(s.elapsed_s);
    drawWorkers(s.workers || []);
    var waiting = phase === 'waiting';
    show('start-form', waiting && s.start_from_ui);
    show('waiting-note', waiting && !s.start_from_ui);
    show('change-form', phase === 'running');
    show('users-fields', !s.open_model);
    show('rate-fields', !!s.open_model);
    $('stop').disabled = !(phase === 'running' || phase === 'done');
    $('stop').textContent = phase === 'done' ? 'Close master' : 'Stop';
    $('reset').disabled = phase !== 'running';
    if (waiting && !$('start-users').value) {
      $('start-users').value = s.users;
      $('start-rate').value = s.spawn_rate;
      $('start-host').value = s.host || '';
    }
  }

  function poll() {
    Promise.all([call('GET', '/api/state'), call('GET', '/api/stats')])
      .then(function (both) {
        drawState(both[0]);
        if (both[0].state !== 'waiting') {
          window.BarrageReport.render($('report'), both[1], { live: both[0].state !== 'done' });
        }
        $('ui-updated').textContent = new Date().toLocaleTimeString();
      })
      .catch(function (e) {
        say('Cannot read the master: ' + e.message, true);
        $('ui-phase').textContent = 'unreachable';
        $('ui-phase').className = 'phase phase-unreachable';
      })
      .then(function () {
        setTimeout(poll, POLL_MS);
      });
  }

  function act(promise, done) {
    promise
      .then(function (data) {
        say(done(data), false);
      })
      .catch(function (e) {
        say(e.message, true);
      });
  }

  $('start-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var body = { users: number('start-users'), spawn_rate: number('start-rate') };
    var host = $('start-host').value.trim();
    if (host) body.host = host;
    var runTime = number('start-time');
    if (runTime !== null) body.run_time_s = runTime;
    act(call('POST', '/api/start', body), function () {
      return 'Starting ' + body.users + ' users at ' + body.spawn_rate + '/s.';
    });
  });

  $('change-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var body = {};
    if (last.state && last.state.open_model) {
      body.arrival_rate = number('change-arrival');
    } else {
      var users = number('change-users'), rate = number('change-rate');
      if (users !== null) body.users = users;
      if (rate !== null) body.spawn_rate = rate;
    }
    act(call('POST', '/api/target', body), function () {
      return 'New target sent: ' + JSON.stringify(body) + '.';
    });
  });

  $('stop').addEventListener('click', function () {
    var closing = last.state && last.state.state === 'done';
    act(call('POST', '/api/stop'), function () {
      return closing ? 'The master is closing.' : 'Stopping: workers finish their requests and send final reports.';
    });
  });

  $('reset').addEventListener('click', function () {
    act(call('POST', '/api/reset'), function (data) {
      return 'Statistics reset at ' + fmtDuration(data.reset_at_s) + '.';
    });
  });

  $('token-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    token = $('token').value.trim();
    sessionStorage.setItem('barrage-token', token);
    show('token-form', false);
    say('Token saved for this tab.', false);
  });

  Array.prototype.forEach.call(document.querySelectorAll('[data-download]'), function (button) {
    button.addEventListener('click', function () {
      var file = button.getAttribute('data-download');
      fetch('/api/download/' + file, { headers: headers(false) })
        .then(function (r) {
          if (!r.ok) throw new Error(file + ': ' + r.status + ' ' + r.statusText);
          return r.blob();
        })
        .then(function (blob) {
          var a = document.createElement('a');
          a.href = URL.createObjectURL(blob);
          a.download = 'barrage-' + file;
          document.body.appendChild(a);
          a.click();
          setTimeout(function () {
            URL.revokeObjectURL(a.href);
            a.remove();
          }, 1000);
          say('Downloaded ' + a.download + '.', false);
        })
        .catch(function (e) {
          say(e.message, true);
        });
    });
  });

  show('token-form', !token);
  poll();
})();
