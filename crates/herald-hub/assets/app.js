// The dashboard's entry: which token to use, which page to show, and the messages
// for a hub that wants a token. The pages themselves are static; every piece of data
// comes from the hub's API with the token the user gave.
//
// Tokens, by where they come from:
// - `?token=` in a run's link (the hub's `urls.dashboard`): that run's token;
// - `#token=` (kept out of server logs): for the run page it is that run's token,
//   for the list it is the admin token; moved to sessionStorage and off the address bar;
// - the form: pasted once, kept in sessionStorage for this tab.

import { h } from './dom.js';
import { showList } from './list.js';
import { showRun } from './run.js';

const ADMIN_KEY = 'herald.admin-token';
const runKey = (id) => `herald.run-token.${id}`;

function stored(key) {
  try {
    return sessionStorage.getItem(key) || null;
  } catch {
    return null;
  }
}

function store(key, value) {
  try {
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
  } catch {
    // Storage is off (a private window's setting): the token lasts for this page only.
  }
}

/** The page the path names: `{page: 'list'}`, `{page: 'run', id}` or `{page: 'unknown'}`. */
function route(pathname) {
  if (pathname === '/' || pathname === '') return { page: 'list' };
  const m = /^\/runs\/([^/]+)\/?$/.exec(pathname);
  if (m) return { page: 'run', id: decodeURIComponent(m[1]) };
  return { page: 'unknown' };
}

/** Takes a `#token=` off the address bar and keeps it for this tab. */
function takeHashToken(where) {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (!token) return;
  if (where.page === 'run') store(runKey(where.id), token);
  else store(ADMIN_KEY, token);
  history.replaceState(history.state, '', location.pathname + location.search);
}

/** The tokens this page can use: `data` for reading, `cancel` for cancelling. */
function tokensFor(where) {
  const admin = stored(ADMIN_KEY);
  if (where.page !== 'run') return { data: admin, admin, run: null };
  const run = new URLSearchParams(location.search).get('token') || stored(runKey(where.id));
  return { data: run || admin, admin, run };
}

const main = document.getElementById('main');
const conn = document.getElementById('conn');
const forget = document.getElementById('forget');
let current = null;

/** The connection indicator: live, reconnecting..., or nothing. */
function setConnection(state) {
  const words = {
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Reconnecting…',
    ended: '',
  };
  const text = words[state] ?? '';
  if (conn.textContent !== text) conn.textContent = text;
  conn.dataset.state = state;
}

/** Replaces the page with the "needs a token" or "token refused" message and a form. */
function showAuthProblem(where, error, hadToken) {
  const refused = hadToken;
  const title = refused ? 'The token was refused' : 'This hub needs a token';
  const detail = refused
    ? `The token was refused: ${error.message}.`
    : 'This hub needs a token to show its runs. Paste the hub’s admin token to see every run, or open a run’s own link (it carries the run’s read token).';
  const input = h('input', {
    id: 'token-input',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
  });
  const form = h('form', { class: 'token-form', onsubmit: (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    if (where.page === 'run' && /^h[rw]_/.test(token)) store(runKey(where.id), token);
    else store(ADMIN_KEY, token);
    // A refused `?token=` must not win over the new one.
    const url = new URL(location.href);
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url.pathname + url.search);
    start();
  } },
    h('label', { for: 'token-input', text: where.page === 'run' ? 'Admin token, or this run’s token' : 'Admin token' }),
    h('div', { class: 'token-row' }, input, h('button', { type: 'submit', text: 'Open' })),
  );
  const heading = h('h1', { id: 'auth-title', tabindex: '-1', text: title });
  main.replaceChildren(
    h('section', { class: 'auth', 'aria-labelledby': 'auth-title' },
      heading,
      h('p', { class: 'auth-message', role: 'alert', text: detail }),
      form,
      h('p', { class: 'hint', text: 'The token is kept in this browser tab only (sessionStorage) and sent to this hub as an Authorization header.' }),
    ),
  );
  setConnection('ended');
  document.title = `${title} — herald`;
  input.focus();
}

/** Replaces the page with a message (an unknown run, an unknown page). */
function showMessage(title, text) {
  main.replaceChildren(
    h('section', { class: 'message', 'aria-labelledby': 'message-title' },
      h('h1', { id: 'message-title', tabindex: '-1', text: title }),
      h('p', { role: 'alert', text }),
      h('p', {}, h('a', { href: '/', text: 'All runs' })),
    ),
  );
  setConnection('ended');
  document.title = `${title} — herald`;
}

/** Shows the page of the current address, closing the streams of the last one. */
function start() {
  if (current) current.dispose();
  current = null;
  const where = route(location.pathname);
  takeHashToken(where);
  const tokens = tokensFor(where);
  forget.hidden = !(tokens.admin || tokens.run);
  const ctx = {
    tokens,
    main,
    setConnection,
    authProblem: (error) => showAuthProblem(where, error, Boolean(tokens.data)),
    message: showMessage,
  };
  if (where.page === 'list') current = showList(ctx);
  else if (where.page === 'run') current = showRun(ctx, where.id);
  else showMessage('Not found', `The dashboard has no page ${location.pathname}.`);
}

forget.addEventListener('click', () => {
  const where = route(location.pathname);
  store(ADMIN_KEY, null);
  if (where.page === 'run') store(runKey(where.id), null);
  const url = new URL(location.href);
  url.searchParams.delete('token');
  history.replaceState(history.state, '', url.pathname + url.search);
  start();
});

// Links between the dashboard's pages change the view without loading the page again.
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.origin !== location.origin) return;
  if (route(a.pathname).page === 'unknown') return;
  e.preventDefault();
  if (a.pathname + a.search !== location.pathname + location.search) {
    history.pushState(null, '', a.pathname + a.search + a.hash);
  }
  start();
  const heading = main.querySelector('h1');
  if (heading) heading.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});
window.addEventListener('popstate', start);

start();
