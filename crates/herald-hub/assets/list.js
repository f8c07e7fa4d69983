// The run list (`GET /`): every run, live from `GET /v1/runs/stream`, newest first,
// sub-runs nested under their parent, stalled and failed ones marked, filtered by status.

import { h, setText, setAttr, reconcile, badge, updateBadge, duration, ago, percentText, setProgress, isTerminal, clip, etaFact } from './dom.js';
import { subscribe } from './sse.js';

const FILTERS = ['all', 'running', 'stalled', 'failed', 'succeeded', 'cancelled'];
const LABELS = { all: 'All', running: 'Running', stalled: 'Stalled', failed: 'Failed', succeeded: 'Succeeded', cancelled: 'Cancelled' };

function filterFromUrl() {
  const status = new URLSearchParams(location.search).get('status');
  return FILTERS.includes(status) ? status : 'all';
}

export function showList(ctx) {
  /** id -> {state, receivedAt, firstSeen} */
  const runs = new Map();
  let filter = filterFromUrl();
  let seen = 0;

  const title = h('h1', { id: 'runs-title', tabindex: '-1', text: 'Runs' });
  const summary = h('p', { class: 'summary', id: 'summary', 'aria-live': 'polite' });
  const counts = {};
  const radios = FILTERS.map((f) => {
    const count = h('span', { class: 'count' });
    counts[f] = count;
    const input = h('input', {
      type: 'radio',
      name: 'status-filter',
      id: `filter-${f}`,
      value: f,
      checked: f === filter,
      onchange: () => {
        filter = f;
        const url = new URL(location.href);
        if (f === 'all') url.searchParams.delete('status');
        else url.searchParams.set('status', f);
        history.replaceState(history.state, '', url.pathname + url.search + url.hash);
        render();
      },
    });
    return h('span', { class: 'filter-option', 'data-status': f },
      input, h('label', { for: `filter-${f}` }, LABELS[f], ' ', count));
  });
  const list = h('ul', { class: 'runs', id: 'runs', 'aria-labelledby': 'runs-title' });
  const empty = h('p', { class: 'empty', id: 'runs-empty', hidden: true });
  ctx.main.replaceChildren(
    h('section', { class: 'list', 'aria-labelledby': 'runs-title' },
      h('div', { class: 'list-head' }, title, summary),
      h('fieldset', { class: 'filters' }, h('legend', { text: 'Show' }), radios),
      list,
      empty,
    ),
  );
  document.title = 'Runs — herald';

  let scheduled = false;
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      render();
    });
  }

  function render() {
    const all = [...runs.values()];
    const tally = Object.fromEntries(FILTERS.map((f) => [f, 0]));
    for (const r of all) {
      tally.all += 1;
      tally[r.state.status] = (tally[r.state.status] || 0) + 1;
    }
    for (const f of FILTERS) setText(counts[f], `(${tally[f]})`);
    const parts = ['running', 'stalled', 'failed'].filter((s) => tally[s] > 0).map((s) => `${tally[s]} ${s}`);
    setText(summary, all.length === 0 ? '' : parts.length ? parts.join(' · ') : 'nothing running');
    const attention = tally.stalled + tally.failed;
    document.title = attention ? `Runs (${attention} need attention) — herald` : 'Runs — herald';

    const shown = all.filter((r) => filter === 'all' || r.state.status === filter);
    const ids = new Set(shown.map((r) => r.state.id));
    const childrenOf = new Map();
    const roots = [];
    for (const r of shown) {
      const parent = r.state.parent;
      if (parent && ids.has(parent)) {
        if (!childrenOf.has(parent)) childrenOf.set(parent, []);
        childrenOf.get(parent).push(r);
      } else {
        roots.push(r);
      }
    }
    const newestFirst = (a, b) => sortKey(b).localeCompare(sortKey(a)) || b.firstSeen - a.firstSeen;
    const oldestFirst = (a, b) => -newestFirst(a, b);
    roots.sort(newestFirst);
    const fill = (ul, items, depth) => {
      reconcile(ul, items, (r) => r.state.id, createRow, (el, r) => {
        updateRow(el, r, runs, depth > 0);
        const kids = (childrenOf.get(r.state.id) || []).sort(oldestFirst);
        const sub = el.querySelector(':scope > .children');
        sub.hidden = kids.length === 0;
        fill(sub, kids, depth + 1);
      });
    };
    fill(list, roots, 0);
    empty.hidden = shown.length > 0;
    setText(empty, all.length === 0 ? 'No runs yet. A program reporting to this hub shows up here as soon as it creates its run.' : `No ${filter} runs.`);
  }

  // Times since the last event and elapsed times move on between messages.
  const ticker = setInterval(() => {
    for (const el of list.querySelectorAll('li.run')) {
      const r = runs.get(el.dataset.key);
      if (r) tick(el, r);
    }
  }, 1000);

  const stream = subscribe({
    path: '/v1/runs/stream',
    token: ctx.tokens.data,
    onStatus: ctx.setConnection,
    onFatal: (error) => {
      if (error.status === 401 || error.status === 403) ctx.authProblem(error);
      else ctx.message('The hub refused the list', error.message);
    },
    onMessage: ({ event, data }) => {
      if (event === 'run') {
        const state = JSON.parse(data);
        const known = runs.get(state.id);
        runs.set(state.id, { state, receivedAt: Date.now(), firstSeen: known ? known.firstSeen : seen++, seenAt: known ? known.seenAt : new Date().toISOString() });
      } else if (event === 'deleted') {
        runs.delete(JSON.parse(data).id);
      }
      schedule();
    },
  });

  render();
  return {
    dispose() {
      clearInterval(ticker);
      stream.close();
    },
  };
}

function sortKey(r) {
  return r.state.started_at || r.seenAt;
}

function createRow(r) {
  const id = r.state.id;
  const progressId = `progress-${id}`;
  return h('li', { class: 'run' },
    h('div', { class: 'run-line' },
      badge(r.state.status),
      h('a', { class: 'run-name', href: `/runs/${encodeURIComponent(id)}` }),
      h('span', { class: 'run-id' }),
      h('span', { class: 'run-parent', hidden: true }),
    ),
    h('div', { class: 'run-bar' },
      h('progress', { id: progressId, max: 100 }),
      h('span', { class: 'pct' }),
    ),
    h('dl', { class: 'facts' },
      h('div', {}, h('dt', { text: 'ETA' }), h('dd', { class: 'eta' })),
      h('div', {}, h('dt', { text: 'Elapsed' }), h('dd', { class: 'elapsed' })),
      h('div', {}, h('dt', { text: 'Last event' }), h('dd', { class: 'since' })),
    ),
    h('p', { class: 'run-note', hidden: true }),
    h('ul', { class: 'children', hidden: true }),
  );
}

function updateRow(el, r, runs, nested) {
  const s = r.state;
  el.dataset.status = s.status;
  updateBadge(el.querySelector('.badge'), s.status);
  const name = el.querySelector('.run-name');
  setText(name, s.name || s.id);
  setText(el.querySelector('.run-id'), s.name && s.name !== s.id ? s.id : '');
  const parent = el.querySelector('.run-parent');
  const parentRun = s.parent && runs.get(s.parent);
  parent.hidden = !s.parent;
  if (s.parent) {
    setText(parent, nested ? 'sub-run' : `sub-run of ${parentRun ? parentRun.state.name || s.parent : s.parent}`);
  }
  const bar = el.querySelector('progress');
  setAttr(bar, 'aria-label', `Progress of ${s.name || s.id}`);
  setProgress(bar, s.percent, s.status === 'succeeded');
  // A finished run that never told its total has no bar to show, not a busy one.
  bar.classList.toggle('unknown', isTerminal(s.status) && !Number.isFinite(s.percent) && s.status !== 'succeeded');
  setText(el.querySelector('.pct'), percentText(s.percent) || (isTerminal(s.status) ? '' : 'no total yet'));
  const note = el.querySelector('.run-note');
  const noteText = runNote(s);
  note.hidden = !noteText;
  setText(note, noteText);
  tick(el, r);
}

/** The one line that says what a run is doing or what went wrong. */
function runNote(s) {
  if (s.status === 'stalled') {
    // The hub marked it when the producer had been silent past its heartbeat timeout.
    return `No event from the producer within its heartbeat timeout: it may be stuck.${s.last_error ? ` Last error: ${clip(s.last_error.message, 160)}` : ''}`;
  }
  if (s.last_error && (s.status === 'failed' || s.status === 'running')) return `Error: ${clip(s.last_error.message, 200)}`;
  if (s.cancel_requested && !isTerminal(s.status)) return 'Cancel requested';
  if (s.status === 'running') {
    const stage = [...(s.stages || [])].reverse().find((st) => st.status === 'running');
    if (s.agent && s.agent.preparing_response) return 'Preparing response…';
    const tool = s.tools && s.tools.in_flight && s.tools.in_flight[0];
    if (tool) return `${tool.tool}${tool.feedback ? `: ${clip(tool.feedback, 120)}` : ''}`;
    if (stage) return `Stage ${stage.name}${stage.total ? `: ${stage.done}/${stage.total}` : ''}`;
  }
  return '';
}

function tick(el, r) {
  const s = r.state;
  const live = !isTerminal(s.status);
  const elapsed = live && s.started_at ? s.elapsed_s + (Date.now() - r.receivedAt) / 1000 : s.elapsed_s;
  setText(el.querySelector('.elapsed'), duration(elapsed));
  setText(el.querySelector('.eta'), live ? etaFact(s) : '—');
  setText(el.querySelector('.since'), ago(s.last_producer_at || s.last_event_at));
}
