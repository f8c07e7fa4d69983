// The run page (`GET /runs/{id}`): the run's state live from `view=state` (stages,
// items, tools, agent, text, errors) and its recent events from the event stream, with
// a cancel button when the token may cancel.

import { h, setText, setAttr, reconcile, badge, updateBadge, duration, ago, percentText, setProgress, isTerminal, clip, preview, clock, etaText, etaFact, overdueText } from './dom.js';
import { subscribe, call } from './sse.js';

/** Events kept in the timeline. */
const TIMELINE = 200;
/** Events fetched for the timeline when the page opens. */
const BACKLOG = 60;

export function showRun(ctx, id) {
  const { tokens } = ctx;
  // Cancel takes the admin token or the run's write token; a read token cannot.
  const cancelToken = tokens.admin || (tokens.run && !tokens.run.startsWith('hr_') ? tokens.run : null);
  let state = null;
  let receivedAt = 0;
  let closed = false;
  const enc = encodeURIComponent(id);

  // The skeleton; sections fill in (and show) as the state says there is something.
  const title = h('h1', { id: 'run-title', tabindex: '-1', text: id });
  const status = badge('running');
  status.id = 'run-status';
  const crumbs = h('p', { class: 'crumbs' }, h('a', { href: '/', text: 'All runs' }));
  const parentLink = h('span', { class: 'parent-link', hidden: true });
  crumbs.append(parentLink);
  const cancelButton = h('button', { type: 'button', id: 'cancel', class: 'danger', hidden: true, text: 'Cancel run…' });
  const cancelNote = h('p', { id: 'cancel-note', class: 'note warn', role: 'status', hidden: true });
  const cancelError = h('p', { id: 'cancel-error', class: 'note bad', role: 'alert', hidden: true });
  const confirmYes = h('button', { type: 'button', id: 'cancel-confirm', class: 'danger', text: 'Request cancel' });
  const confirmNo = h('button', { type: 'button', id: 'cancel-keep', text: 'Keep running' });
  const dialog = h('dialog', { id: 'cancel-dialog', 'aria-labelledby': 'cancel-dialog-title' },
    h('h2', { id: 'cancel-dialog-title', text: 'Ask this run to stop?' }),
    h('p', { text: 'The hub records a cancel request; the program reporting the run sees it and decides how to stop.' }),
    h('div', { class: 'dialog-actions' }, confirmNo, confirmYes),
  );

  const overall = h('progress', { id: 'overall-progress', max: 100 });
  const overallPct = h('span', { class: 'pct', id: 'overall-pct' });
  const fact = (label, cls) => {
    const dd = h('dd', { class: cls });
    return [h('div', {}, h('dt', { text: label }), dd), dd];
  };
  const [etaBox, etaDd] = fact('ETA', 'eta');
  const [elapsedBox, elapsedDd] = fact('Elapsed', 'elapsed');
  const [sinceBox, sinceDd] = fact('Last event', 'since');
  sinceBox.title = 'The last event from the program reporting the run';
  const [eventsBox, eventsDd] = fact('Events', 'events');
  const [itemsBox, itemsDd] = fact('Items', 'items-summary');
  const lastError = h('div', { id: 'last-error', class: 'alert', role: 'alert', hidden: true });
  const overview = h('section', { class: 'overview', 'aria-label': 'Overview' },
    h('div', { class: 'bar' }, h('label', { for: 'overall-progress', text: 'Overall' }), overall, overallPct),
    h('dl', { class: 'facts' }, etaBox, elapsedBox, sinceBox, eventsBox, itemsBox),
  );

  const stagesList = h('ol', { class: 'stages', id: 'stages' });
  const stagesSec = section('stages-sec', 'Stages', stagesList);

  const itemCounts = h('p', { class: 'item-counts', id: 'item-counts' });
  const runningItems = h('ul', { class: 'plain', id: 'running-items' });
  const runningHead = h('h3', { text: 'Running' });
  const failedItems = h('ol', { class: 'failures', id: 'failed-items', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const failedHead = h('h3', { text: 'Failed' });
  const itemsSec = section('items-sec', 'Items', itemCounts, runningHead, runningItems, failedHead, failedItems);

  const agentFacts = h('p', { class: 'agent-facts', id: 'agent-facts' });
  const preparing = h('p', { class: 'preparing', id: 'preparing', role: 'status', hidden: true }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Preparing response…');
  const inFlight = h('ul', { class: 'tools', id: 'tools-in-flight' });
  const inFlightHead = h('h3', { text: 'Tools in flight' });
  const toolsDone = h('ul', { class: 'tools', id: 'tools-done' });
  const toolsDoneHead = h('h3', { text: 'Finished tools' });
  const response = h('div', { class: 'response', id: 'response', hidden: true });
  const agentSec = section('agent-sec', 'Agent', agentFacts, preparing, inFlightHead, inFlight, toolsDoneHead, toolsDone, response);

  const textNote = h('p', { class: 'hint', id: 'text-note', hidden: true });
  const text = h('pre', { class: 'text', id: 'text', tabindex: '0', 'aria-label': 'Streamed text' });
  const textSec = section('text-sec', 'Text', textNote, text);

  const logs = h('ol', { class: 'logs', id: 'logs' });
  const logsSec = section('logs-sec', 'Logs', logs);

  const result = h('pre', { class: 'result', id: 'result', tabindex: '0' });
  const resultSec = section('result-sec', 'Result', result);

  const timeline = h('ol', { class: 'timeline', id: 'timeline' });
  const timelineSec = section('timeline-sec', 'Timeline', h('p', { class: 'hint', text: 'Recent events, newest first.' }), timeline);
  timelineSec.hidden = false;

  ctx.main.replaceChildren(
    h('article', { class: 'run-page', 'aria-labelledby': 'run-title' },
      h('header', { class: 'run-head' },
        crumbs,
        h('div', { class: 'title-row' }, title, status),
        h('p', { class: 'run-id', id: 'run-id', text: id }),
        h('div', { class: 'actions' }, cancelButton),
        cancelNote,
        cancelError,
      ),
      overview,
      lastError,
      h('div', { class: 'columns' },
        h('div', { class: 'column' }, stagesSec, itemsSec, logsSec, resultSec),
        h('div', { class: 'column' }, agentSec, textSec, timelineSec),
      ),
      dialog,
    ),
  );
  document.title = `${id} — herald`;

  cancelButton.addEventListener('click', () => {
    setText(cancelError, '');
    cancelError.hidden = true;
    dialog.showModal();
    confirmNo.focus();
  });
  confirmNo.addEventListener('click', () => dialog.close());
  confirmYes.addEventListener('click', async () => {
    dialog.close();
    cancelButton.disabled = true;
    try {
      await call('POST', `/v1/runs/${enc}/cancel`, cancelToken, { reason: 'cancelled from the dashboard' });
      // The state stream may have shown the request (with its reason) already.
      if (!(state && state.cancel_requested)) {
        cancelNote.hidden = false;
        setText(cancelNote, 'Cancel requested: waiting for the run to stop.');
      }
    } catch (error) {
      cancelButton.disabled = false;
      cancelError.hidden = false;
      setText(cancelError, `Cancel failed: ${error.message}`);
    }
  });

  // --- the state ----------------------------------------------------------------

  let states = null;
  let events = null;
  let stateStatus = 'connecting';
  let eventsStatus = 'connecting';
  const showConnection = () => {
    const all = [stateStatus, eventsStatus];
    let s = 'live';
    if (all.includes('reconnecting')) s = 'reconnecting';
    else if (all.includes('connecting')) s = 'connecting';
    else if (all.every((x) => x === 'ended')) s = 'ended';
    ctx.setConnection(s);
  };
  const fatal = (error) => {
    if (closed) return;
    dispose();
    if (error.status === 401 || error.status === 403) ctx.authProblem(error);
    else if (error.status === 404) ctx.message('Run not found', `There is no run ${id} on this hub: it may have been deleted, or expired after its time to live.`);
    else ctx.message('The hub refused this run', error.message);
  };

  states = subscribe({
    path: `/v1/runs/${enc}/stream?view=state`,
    token: tokens.data,
    onStatus: (s) => { stateStatus = s; showConnection(); },
    onFatal: fatal,
    finished: () => state !== null && isTerminal(state.status),
    onMessage: ({ event, data }) => {
      if (event !== 'state') return;
      const first = state === null;
      state = JSON.parse(data);
      receivedAt = Date.now();
      render();
      if (first) startEvents();
    },
  });

  function render() {
    const s = state;
    const name = s.name || s.id;
    setText(title, name);
    updateBadge(status, s.status);
    document.title = `${percentText(s.percent) ? `${percentText(s.percent)} · ` : ''}${name} — herald`;
    parentLink.hidden = !s.parent;
    if (s.parent && parentLink.dataset.parent !== s.parent) {
      parentLink.dataset.parent = s.parent;
      parentLink.replaceChildren(' / sub-run of ', h('a', { href: `/runs/${encodeURIComponent(s.parent)}`, text: s.parent }));
    }

    const terminal = isTerminal(s.status);
    const mayCancel = cancelToken !== null || tokens.data === null;
    cancelButton.hidden = !mayCancel || terminal || s.cancel_requested;
    if (s.cancel_requested) {
      cancelNote.hidden = false;
      setText(cancelNote, terminal
        ? `Cancel was requested${s.cancel_reason ? ` (${s.cancel_reason})` : ''}.`
        : `Cancel requested${s.cancel_reason ? ` (${s.cancel_reason})` : ''}: waiting for the run to stop.`);
    }

    overview.dataset.status = s.status;
    setAttr(overall, 'aria-label', `Overall progress of ${name}`);
    setProgress(overall, s.percent, s.status === 'succeeded');
    setText(overallPct, percentText(s.percent) || (terminal ? '' : 'no total yet'));
    setText(eventsDd, String(s.event_count));
    const it = s.items;
    setText(itemsDd, `${it.succeeded} done · ${it.failed} failed${it.skipped ? ` · ${it.skipped} skipped` : ''}${it.running ? ` · ${it.running} running` : ''}`);
    itemsBox.classList.toggle('bad', it.failed > 0);
    tick();

    lastError.hidden = !s.last_error;
    if (s.last_error) {
      lastError.replaceChildren(
        h('strong', { text: `Last error (${s.last_error.source}, ${clock(s.last_error.at)}): ` }),
        s.last_error.message,
      );
    }

    renderStages(s);
    renderItems(s);
    renderAgent(s);
    renderText(s);
    renderLogs(s);
    resultSec.hidden = s.result === undefined;
    if (s.result !== undefined) setText(result, JSON.stringify(s.result, null, 2));
  }

  function tick() {
    if (!state) return;
    const s = state;
    const live = !isTerminal(s.status);
    setText(elapsedDd, duration(live && s.started_at ? s.elapsed_s + (Date.now() - receivedAt) / 1000 : s.elapsed_s));
    setText(etaDd, live ? etaFact(s) : '—');
    setText(sinceDd, ago(s.last_producer_at || producerAt || s.last_event_at));
    for (const el of inFlight.querySelectorAll('[data-started]')) {
      setText(el, `for ${duration(Math.max(0, (Date.now() - Date.parse(el.dataset.started)) / 1000))}`);
    }
  }
  const ticker = setInterval(tick, 1000);

  function renderStages(s) {
    stagesSec.hidden = s.stages.length === 0;
    reconcile(stagesList, s.stages, (st) => st.name, (st) => {
      const pid = `stage-${Math.random().toString(36).slice(2)}`;
      return h('li', { class: 'stage' },
        h('div', { class: 'stage-head' },
          h('label', { for: pid, class: 'stage-name' }),
          badge(st.status),
        ),
        h('div', { class: 'bar' }, h('progress', { id: pid, max: 100 }), h('span', { class: 'pct' })),
        h('p', { class: 'stage-facts' }),
        h('p', { class: 'stage-error bad', hidden: true }),
      );
    }, (el, st) => {
      el.dataset.status = st.status;
      setText(el.querySelector('.stage-name'), st.name);
      updateBadge(el.querySelector('.badge'), st.status);
      setProgress(el.querySelector('progress'), st.percent, st.status === 'succeeded');
      const count = st.total !== undefined ? `${st.done} / ${st.total}` : `${st.done}`;
      setText(el.querySelector('.pct'), percentText(st.percent));
      const facts = [`${count}${st.unit ? ` ${st.unit}` : ''}`];
      if (Number.isFinite(st.rate) && st.status === 'running') facts.push(`${st.rate >= 10 ? Math.round(st.rate) : st.rate.toFixed(1)}/s`);
      if (st.status === 'running') facts.push(Number.isFinite(st.eta_s) ? `ETA ${etaText(st.eta_s, st.eta_low_s, st.eta_high_s)}` : 'ETA estimating…');
      if (st.status === 'running' && st.overdue) facts.push(overdueText(st.overdue));
      facts.push(`elapsed ${duration(st.elapsed_s)}`);
      if (st.items_failed) facts.push(`${st.items_failed} failed`);
      setText(el.querySelector('.stage-facts'), facts.join(' · '));
      const err = el.querySelector('.stage-error');
      err.hidden = !st.error;
      setText(err, st.error ? `Error: ${st.error}` : '');
    });
  }

  function renderItems(s) {
    const it = s.items;
    const any = it.succeeded + it.failed + it.skipped + it.running > 0;
    itemsSec.hidden = !any;
    setText(itemCounts, `${it.succeeded} succeeded · ${it.failed} failed · ${it.skipped} skipped · ${it.running} running`);
    runningHead.hidden = runningItems.hidden = s.running_items.length === 0;
    reconcile(runningItems, s.running_items, (i) => i.item, () => h('li', {}), (el, i) => {
      setText(el, `${i.label || i.item}${i.stage ? ` (${i.stage})` : ''} — started ${ago(i.started_at)}`);
    });
    failedHead.hidden = failedItems.hidden = s.failed_items.length === 0;
    const failures = [...s.failed_items].reverse();
    reconcile(failedItems, failures, (f) => `${f.seq}`, (f) => h('li', { class: 'failure' },
      h('span', { class: 'badge', 'data-status': 'failed' }, h('span', { 'aria-hidden': 'true', text: '✕' }), ' Failed'),
      ' ',
      h('strong', { class: 'failure-item', text: f.label || f.item }),
      f.stage ? h('span', { class: 'muted', text: ` in ${f.stage}` }) : null,
      h('span', { class: 'muted', text: ` at ${clock(f.at)}` }),
      h('div', { class: 'failure-error', text: f.error || 'no error message' }),
    ), () => {});
  }

  function renderAgent(s) {
    const tools = s.tools;
    const hasAgent = s.agent.iteration !== undefined || s.agent.preparing_response || s.agent.response !== undefined;
    const hasTools = tools.in_flight.length + tools.done.length > 0;
    const hasLlm = s.llm && s.llm.calls > 0;
    agentSec.hidden = !(hasAgent || hasTools || hasLlm);
    const facts = [];
    if (s.agent.iteration !== undefined) facts.push(`iteration ${s.agent.iteration}`);
    if (hasLlm) {
      facts.push(`${s.llm.calls} model call${s.llm.calls === 1 ? '' : 's'}${s.llm.model ? ` (${s.llm.model})` : ''}`);
      facts.push(`${s.llm.input_tokens} in / ${s.llm.output_tokens} out tokens`);
      if (s.llm.in_flight.length) facts.push('waiting for the model');
    }
    if (tools.succeeded + tools.failed > 0) facts.push(`${tools.succeeded} tool calls succeeded, ${tools.failed} failed`);
    setText(agentFacts, facts.join(' · '));
    agentFacts.hidden = facts.length === 0;
    preparing.hidden = !(s.agent.preparing_response && !isTerminal(s.status));

    const flying = group(tools.in_flight);
    inFlightHead.hidden = inFlight.hidden = flying.length === 0;
    reconcile(inFlight, flying, (g) => g.key, () => h('li', { class: 'tool' },
      h('span', { class: 'tool-name' }), ' ', h('span', { class: 'tool-status' }), ' ', h('span', { class: 'muted tool-time' }),
      h('div', { class: 'feedback' }),
      h('div', { class: 'bar tool-progress', hidden: true }, h('progress', { max: 100 }), h('span', { class: 'pct' }),
        h('span', { class: 'muted tool-count' }))), (el, g) => {
      const c = g.calls[0];
      setText(el.querySelector('.tool-name'), `${c.tool}${g.calls.length > 1 ? ` ×${g.calls.length}` : ''}`);
      setText(el.querySelector('.tool-status'), c.status === 'selected' ? '(selected)' : '(running)');
      const time = el.querySelector('.tool-time');
      time.dataset.started = c.started_at;
      setText(time, `for ${duration(Math.max(0, (Date.now() - Date.parse(c.started_at)) / 1000))}`);
      // What the call says it is doing now outranks what it said when it started.
      const p = c.progress;
      const said = (p && p.message) || c.feedback;
      const fb = el.querySelector('.feedback');
      fb.hidden = !said;
      setText(fb, said || '');
      const bar = el.querySelector('.tool-progress');
      bar.hidden = !p;
      if (p) {
        const meter = bar.querySelector('progress');
        setAttr(meter, 'aria-label', `Progress of ${c.tool}`);
        setProgress(meter, p.percent, false);
        setText(bar.querySelector('.pct'), percentText(p.percent));
        const count = p.total !== undefined ? `${p.done} / ${p.total}` : `${p.done}`;
        setText(bar.querySelector('.tool-count'), `${count}${p.unit ? ` ${p.unit}` : ''}`);
      }
    });

    const done = group([...tools.done].reverse());
    toolsDoneHead.hidden = toolsDone.hidden = done.length === 0;
    reconcile(toolsDone, done, (g) => g.key, () => h('li', { class: 'tool' },
      badge('succeeded'), ' ', h('span', { class: 'tool-name' }), ' ', h('span', { class: 'muted tool-time' }),
      h('div', { class: 'feedback' }), h('div', { class: 'tool-error bad' })), (el, g) => {
      const c = g.calls[0];
      el.dataset.status = c.status;
      updateBadge(el.querySelector('.badge'), c.status);
      setText(el.querySelector('.tool-name'), `${c.tool}${g.calls.length > 1 ? ` ×${g.calls.length}` : ''}`);
      const times = g.calls.map((x) => duration(x.elapsed_s));
      setText(el.querySelector('.tool-time'), g.calls.length > 1 ? `took ${times.slice(0, 5).join(', ')}${times.length > 5 ? ', …' : ''}` : `took ${times[0]}`);
      const fb = el.querySelector('.feedback');
      fb.hidden = !c.feedback;
      setText(fb, c.feedback || '');
      const err = el.querySelector('.tool-error');
      err.hidden = !c.error;
      setText(err, c.error ? `Error: ${c.error}` : '');
    });

    response.hidden = s.agent.response === undefined;
    if (s.agent.response !== undefined) {
      if (!response.firstChild) response.append(h('h3', { text: 'Response' }), h('p', { class: 'response-text' }));
      setText(response.querySelector('.response-text'), s.agent.response);
    }
  }

  function renderText(s) {
    textSec.hidden = !s.text;
    const atBottom = text.scrollHeight - text.scrollTop - text.clientHeight < 24;
    setText(text, s.text);
    if (atBottom) text.scrollTop = text.scrollHeight;
    const shown = new TextEncoder().encode(s.text).length;
    textNote.hidden = !(s.text_bytes > shown);
    if (s.text_bytes > shown) setText(textNote, `The last ${Math.round(shown / 1024)} KiB of ${Math.round(s.text_bytes / 1024)} KiB streamed.`);
  }

  function renderLogs(s) {
    logsSec.hidden = s.logs.length === 0;
    reconcile(logs, [...s.logs].reverse(), (l) => `${l.at}|${l.level}|${l.message}`, (l) => h('li', { class: `log log-${l.level}` },
      h('span', { class: 'muted', text: clock(l.at) }), ' ',
      h('span', { class: 'level', text: l.level.toUpperCase() }), ' ',
      h('span', { text: l.message })), () => {});
  }

  // --- the timeline ---------------------------------------------------------------

  /** Entries newest first: {seq, type, summary, count, bad, at}. */
  const entries = [];
  let sawFinish = false;
  /** When the producer last spoke: the hub's own events (stalled, cancel) do not count. */
  let producerAt = null;

  function startEvents() {
    const after = Math.max(0, state.last_seq - BACKLOG);
    events = subscribe({
      path: `/v1/runs/${enc}/stream?after=${after}`,
      token: tokens.data,
      resume: true,
      onStatus: (s) => { eventsStatus = s; showConnection(); },
      onFatal: fatal,
      finished: () => sawFinish,
      onMessage: ({ data }) => {
        const e = JSON.parse(data);
        if (e.event === 'run.finished') sawFinish = true;
        if (e.event !== 'run.stalled' && e.event !== 'run.cancel_requested' && (!producerAt || e.ts > producerAt)) {
          producerAt = e.ts;
          tick();
        }
        addEntry(e);
        scheduleTimeline();
      },
    });
  }

  function addEntry(e) {
    const { summary, bad } = describe(e);
    const top = entries[0];
    // A run of ticks or text is one line; so is a feedback message repeated by the
    // same tool with the same input.
    const merges = top && top.type === e.event && (
      e.event === 'text.delta' || e.event === 'progress' || e.event === 'heartbeat' || top.summary === summary);
    if (merges) {
      top.count += 1;
      top.seq = e.seq;
      top.at = e.ts;
      if (e.event === 'text.delta') top.chars += e.text.length;
      top.summary = e.event === 'text.delta' ? `${top.chars} characters` : summary;
      top.bad = top.bad || bad;
      return;
    }
    entries.unshift({ key: e.seq, seq: e.seq, type: e.event, summary, bad, count: 1, at: e.ts, chars: e.event === 'text.delta' ? e.text.length : 0 });
    if (entries.length > TIMELINE) entries.length = TIMELINE;
  }

  let timelineScheduled = false;
  function scheduleTimeline() {
    if (timelineScheduled) return;
    timelineScheduled = true;
    requestAnimationFrame(() => {
      timelineScheduled = false;
      reconcile(timeline, entries, (en) => en.key, () => h('li', { class: 'entry' },
        h('span', { class: 'muted at' }), ' ', h('span', { class: 'type' }), ' ', h('span', { class: 'summary' })), (el, en) => {
        el.classList.toggle('bad', Boolean(en.bad));
        setText(el.querySelector('.at'), clock(en.at));
        setText(el.querySelector('.type'), `${en.type}${en.count > 1 ? ` ×${en.count}` : ''}`);
        setText(el.querySelector('.summary'), en.summary);
      });
    });
  }

  function dispose() {
    closed = true;
    clearInterval(ticker);
    if (states) states.close();
    if (events) events.close();
  }
  return { dispose };
}

function section(id, heading, ...children) {
  const hid = `${id}-title`;
  return h('section', { id, class: 'panel', 'aria-labelledby': hid, hidden: true },
    h('h2', { id: hid, text: heading }), ...children);
}

/**
 * Tool calls grouped by tool, input, feedback and status: a message repeated by the same
 * tool with the same input is shown once, with a count.
 */
function group(calls) {
  const groups = new Map();
  for (const c of calls) {
    // A call that reports its own progress has a row of its own.
    const key = JSON.stringify([c.tool, c.input ?? null, c.feedback ?? null, c.status, c.progress ? c.call_id : null]);
    if (!groups.has(key)) groups.set(key, { key, calls: [] });
    groups.get(key).calls.push(c);
  }
  return [...groups.values()];
}

/** One line about an event for the timeline, and whether it is bad news. */
function describe(e) {
  switch (e.event) {
    case 'run.started': return { summary: e.name };
    case 'run.finished': return { summary: `${e.status}${e.error ? `: ${e.error}` : ''}`, bad: e.status !== 'succeeded' };
    case 'run.cancel_requested': return { summary: e.reason || 'cancel requested', bad: true };
    case 'run.stalled': return { summary: `silent for ${duration(e.silent_for_s)}`, bad: true };
    case 'heartbeat': return { summary: e.note || `alive after ${duration(e.elapsed_s)}` };
    case 'stage.started': return { summary: `${e.stage}${e.total !== undefined ? ` (${e.total} items)` : ''}` };
    case 'stage.finished': return { summary: `${e.stage} ${e.status}${e.error ? `: ${e.error}` : ''}`, bad: e.status === 'failed' };
    case 'progress': return { summary: `${e.stage ? `${e.stage}: ` : ''}${e.call_id ? `tool ${e.call_id}: ` : ''}${e.done}${e.total !== undefined ? ` / ${e.total}` : ''}${e.message ? ` (${clip(e.message, 200)})` : ''}` };
    case 'item.started': return { summary: `${e.label || e.item}${e.stage ? ` (${e.stage})` : ''}` };
    case 'item.finished': return { summary: `${e.item} ${e.status}${e.error ? `: ${e.error}` : ''}`, bad: e.status === 'failed' };
    case 'log': return { summary: `${e.level}: ${clip(e.message, 200)}`, bad: e.level === 'error' };
    case 'agent.iteration': return { summary: `iteration ${e.iteration}` };
    case 'agent.history': return { summary: `${(e.messages || []).length} messages` };
    case 'agent.system_message': return { summary: clip(e.message, 160) };
    case 'llm.request': return { summary: [e.provider, e.model].filter(Boolean).join(' ') || e.call_id };
    case 'llm.response': return { summary: [e.stop_reason, e.output_tokens !== undefined ? `${e.output_tokens} tokens` : '', e.elapsed_s !== undefined ? duration(e.elapsed_s) : ''].filter(Boolean).join(' · ') || e.call_id };
    case 'text.delta': return { summary: `${e.text.length} characters` };
    case 'tool.selected': return { summary: `${e.tool}${e.input !== undefined ? ` ${preview(e.input, 80)}` : ''}` };
    case 'tool.started': return { summary: `${e.tool}${e.feedback ? `: ${e.feedback}` : ''}${e.input !== undefined ? ` ${preview(e.input, 60)}` : ''}` };
    case 'tool.finished': return { summary: `${e.tool} ${e.status}${e.elapsed_s !== undefined ? ` in ${duration(e.elapsed_s)}` : ''}${e.error ? `: ${e.error}` : ''}`, bad: e.status === 'failed' };
    case 'agent.preparing_response': return { summary: 'preparing the response' };
    case 'agent.response': return { summary: clip(e.text, 160) };
    default: {
      const { v, event, run, seq, ts, id, parent, ...rest } = e;
      return { summary: preview(rest, 160) };
    }
  }
}
