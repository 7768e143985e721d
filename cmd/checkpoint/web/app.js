// checkpoint serve: a hash router over three views, and the polling that
// keeps running experiments live without reloading the page.
import { h, put } from './dom.js';
import { experimentsView } from './experiments.js';
import { experimentView } from './experiment.js';
import { compareView } from './compare.js';

const main = document.getElementById('main');
const live = document.getElementById('live');
let generation = 0; // bumps on every navigation: old polls stop

function context() {
  const gen = ++generation;
  return {
    get active() { return gen === generation; },
    // poll calls fn now and then every ms while this view is shown; fn
    // returns whether something is running (to say so in the header).
    poll(fn, ms) {
      const tick = async () => {
        if (gen !== generation) return;
        try {
          const running = await fn();
          if (gen !== generation) return;
          live.textContent = running ? '● live' : '';
          live.classList.remove('error');
        } catch (e) {
          if (gen !== generation) return;
          this.error(e);
        }
        setTimeout(tick, ms);
      };
      tick();
    },
    error(e) {
      live.textContent = `Cannot reach the server: ${e.message}`;
      live.classList.add('error');
    },
  };
}

async function route() {
  const ctx = context();
  const hash = location.hash || '#/';
  const [path, query] = hash.slice(1).split('?');
  document.querySelectorAll('nav a').forEach((a) => a.removeAttribute('aria-current'));
  try {
    if (path.startsWith('/exp/')) {
      const name = decodeURIComponent(path.slice(5));
      document.title = `${name} · checkpoint`;
      experimentView(main, ctx, name);
    } else if (path.startsWith('/compare')) {
      document.getElementById('nav-compare').setAttribute('aria-current', 'page');
      const names = new URLSearchParams(query || '').getAll('name');
      document.title = 'Compare · checkpoint';
      await compareView(main, ctx, names);
    } else {
      document.getElementById('nav-experiments').setAttribute('aria-current', 'page');
      document.title = 'Experiments · checkpoint';
      experimentsView(main, ctx);
    }
  } catch (e) {
    put(main, h('h1', {}, 'Error'), h('p', { class: 'warn', role: 'alert' }, e.message));
  }
}

window.addEventListener('hashchange', () => { route(); main.focus({ preventScroll: true }); });
route();
