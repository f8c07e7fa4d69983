// Building and updating the page without a framework: `h` makes elements,
// `reconcile` keeps a keyed list of them in step with data (so a focused link in a
// live list keeps its focus), and the formatters turn the run state's numbers into
// words.

/** An element: `h('a', {href: '/'}, 'text', child)`. `class`, `text`, `on*` handled. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Sets `el`'s text only when it changed (a screen reader hears real changes only). */
export function setText(el, text) {
  const value = text === undefined || text === null ? '' : String(text);
  if (el.textContent !== value) el.textContent = value;
}

/** Sets or removes an attribute, touching the DOM only on a change. */
export function setAttr(el, name, value) {
  if (value === undefined || value === null || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else {
    const v = value === true ? '' : String(value);
    if (el.getAttribute(name) !== v) el.setAttribute(name, v);
  }
}

/**
 * Makes `parent`'s children the elements of `items`, in order: an item whose key was
 * shown before keeps its element (updated in place), new ones are created, and gone
 * ones removed.
 */
export function reconcile(parent, items, keyOf, create, update) {
  const existing = new Map();
  for (const child of parent.children) existing.set(child.dataset.key, child);
  let cursor = parent.firstElementChild;
  for (const item of items) {
    const key = String(keyOf(item));
    let el = existing.get(key);
    if (el) {
      existing.delete(key);
    } else {
      el = create(item);
      el.dataset.key = key;
    }
    update(el, item);
    if (el !== cursor) parent.insertBefore(el, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const el of existing.values()) el.remove();
}

/** The words and symbol of a run, stage, item or tool status; never color alone. */
const STATUS = {
  running: ['▶', 'Running'],
  stalled: ['⚠', 'Stalled'],
  succeeded: ['✓', 'Succeeded'],
  failed: ['✕', 'Failed'],
  cancelled: ['■', 'Cancelled'],
  skipped: ['↷', 'Skipped'],
  selected: ['…', 'Selected'],
};

/** A status badge: symbol and word, colored by `data-status`. */
export function badge(status) {
  const el = h('span', { class: 'badge' });
  updateBadge(el, status);
  return el;
}

export function updateBadge(el, status) {
  const [symbol, word] = STATUS[status] || ['•', status || 'unknown'];
  setAttr(el, 'data-status', status);
  if (el.dataset.shown !== status) {
    el.dataset.shown = status;
    el.replaceChildren(h('span', { 'aria-hidden': 'true', text: symbol }), ` ${word}`);
  }
}

export function isTerminal(status) {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

/** `250ms`, `3.2s`, `45s`, `3m 05s`, `1h 02m`; a dash when unknown. */
export function duration(s) {
  if (s === undefined || s === null || !Number.isFinite(s) || s < 0) return '—';
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 10) return `${s.toFixed(1)}s`;
  const total = Math.round(s);
  if (total < 60) return `${total}s`;
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (hours > 0) return `${hours}h ${String(minutes).padStart(2, '0')}m`;
  return `${minutes}m ${String(seconds).padStart(2, '0')}s`;
}

/**
 * The time left as every view of herald shows it (the Rust views use
 * `herald::eta_text`, by the same rule): the range when its ends are a quarter of the
 * point or more apart, rounded outwards in the unit of its high end (`20–41s`,
 * `3–5 min`, `2–4 h`, `2–5 d`), else the point (`42s`). `null` when unknown.
 */
export function etaText(eta, low, high) {
  if (!Number.isFinite(eta)) return null;
  const point = Math.max(0, eta);
  const lo = Number.isFinite(low) ? Math.min(low, point) : point;
  const hi = Number.isFinite(high) ? Math.max(high, point) : point;
  if (hi - lo >= 0.25 * point && hi - lo > 0) {
    const [scale, unit] = hi < 100 ? [1, 's'] : hi < 6000 ? [60, ' min'] : hi < 172800 ? [3600, ' h'] : [86400, ' d'];
    return `${Math.floor(lo / scale)}–${Math.ceil(hi / scale)}${unit}`;
  }
  return duration(point);
}

/** `current item running 1m 00s, typically 1.0s`, for a counter whose unit is overdue. */
export function overdueText(overdue) {
  return `current item running ${duration(overdue.running_s)}, typically ${duration(overdue.typical_s)}`;
}

/**
 * What a run's page and its row in the list show of its time left: the run's own ETA
 * when the state has one (it covers the whole run); else the current stage's, named as
 * the stage's (`stage`), never as the run's; and the current unit's overdue note.
 */
export function runEta(s) {
  const current = [...(s.stages || [])].reverse().find((st) => st.status === 'running');
  const counter = current || s.progress;
  const note = counter && counter.overdue ? overdueText(counter.overdue) : null;
  if (Number.isFinite(s.eta_s)) return { text: etaText(s.eta_s, s.eta_low_s, s.eta_high_s), stage: null, note };
  if (current && Number.isFinite(current.eta_s)) {
    return { text: etaText(current.eta_s, current.eta_low_s, current.eta_high_s), stage: current.name, note };
  }
  return { text: null, stage: null, note };
}

/** The ETA fact of a live run: `3–5 min`, `stage parse: 42s`, with the overdue note. */
export function etaFact(s) {
  if (s.status === 'stalled') return 'stalled';
  const eta = runEta(s);
  let text = eta.text === null ? 'estimating…' : eta.stage === null ? eta.text : `stage ${eta.stage}: ${eta.text}`;
  if (eta.note) text += ` · ${eta.note}`;
  return text;
}

/** Seconds from an RFC 3339 time to now, never negative; `null` when unknown. */
export function secondsSince(ts) {
  if (!ts) return null;
  const then = Date.parse(ts);
  if (Number.isNaN(then)) return null;
  return Math.max(0, (Date.now() - then) / 1000);
}

/** `just now`, `12s ago`, `3m 05s ago`; a dash when unknown. */
export function ago(ts) {
  const s = secondsSince(ts);
  if (s === null) return '—';
  if (s < 2) return 'just now';
  return `${duration(s)} ago`;
}

/** `45%`, floored so that 99.6 does not read as done. */
export function percentText(p) {
  if (p === undefined || p === null || !Number.isFinite(p)) return '';
  return `${Math.floor(Math.min(100, Math.max(0, p)))}%`;
}

/** The local time of day of an RFC 3339 time, `14:03:27`. */
export function clock(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

/** At most `n` characters of `text`, with an ellipsis when cut. */
export function clip(text, n) {
  const s = String(text ?? '');
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** A JSON value as one short line. */
export function preview(value, n = 120) {
  if (value === undefined) return '';
  return clip(typeof value === 'string' ? value : JSON.stringify(value), n);
}

/**
 * Sets a `<progress>` to `percent` (0-100), or leaves it indeterminate when the
 * percent is unknown; `done` fills a finished bar that never reported one.
 */
export function setProgress(el, percent, done) {
  const p = Number.isFinite(percent) ? percent : done ? 100 : null;
  if (p === null) {
    if (el.hasAttribute('value')) el.removeAttribute('value');
  } else if (el.value !== p || !el.hasAttribute('value')) {
    el.value = Math.min(100, Math.max(0, p));
  }
}
