/**
 * The console's entry point: renders the layout and the page of the current hash route into
 * `#app` (the shell the server writes has that one element and no inline script or style).
 */
import { html } from 'htm/preact';
import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import { Layout } from './layout.js';
import { AnomaliesPage } from './pages/anomalies.js';
import { DecisionPage } from './pages/decision.js';
import { DecisionsPage } from './pages/decisions.js';
import { DevicePage, DevicesPage } from './pages/devices.js';
import { GraphPage } from './pages/graph.js';
import { PeoplePage } from './pages/people.js';
import { PolicyPage } from './pages/policy.js';
import { WorkloadsPage } from './pages/workloads.js';
import { useRoute } from './router.js';
import type { Route } from './routes.js';
import { Dialogs } from './ui.js';

function pageOf(r: Route) {
  switch (r.page) {
    case 'graph':
      return html`<${GraphPage} range=${r.id} />`;
    case 'decisions':
      return r.id ? html`<${DecisionPage} id=${r.id} key=${r.id} />` : html`<${DecisionsPage} />`;
    case 'people':
      return html`<${PeoplePage} />`;
    case 'devices':
      return r.id ? html`<${DevicePage} id=${r.id} key=${r.id} />` : html`<${DevicesPage} />`;
    case 'workloads':
      return html`<${WorkloadsPage} />`;
    case 'policy':
      return html`<${PolicyPage} />`;
    case 'anomalies':
      return html`<${AnomaliesPage} />`;
  }
}

function App() {
  const route = useRoute();
  useEffect(() => {
    document.title = `${route.page} · nevertrust console`;
  }, [route.page]);
  return html`<${Layout} page=${route.page}>${pageOf(route)}<//><${Dialogs} />`;
}

const root = document.getElementById('app');
if (root) render(html`<${App} />`, root);
