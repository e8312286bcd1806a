/**
 * The service graph: who called whom over a window (aggregated on the server), laid out left to
 * right by ELK's layered algorithm and drawn by cytoscape. Allowed edges green, denied red, new
 * edges marked, edges the policy allows but nobody used dashed (least-privilege candidates). The
 * edge table beside the canvas is the keyboard's way in: focusing a row selects that edge, and a
 * selected edge lists its decisions.
 */
import type cytoscape from 'cytoscape';
import type { Core, ElementDefinition, EventObject, StylesheetJson } from 'cytoscape';
import type ELK from 'elkjs';
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, query } from '../api.js';
import { href, parseGraphRange } from '../routes.js';
import { Alert, fmtAge, fmtTime, Page, useLoad } from '../ui.js';
import type { AuditPage, GraphEdge, GraphWire } from '../wire.js';

const WINDOWS = ['1h', '24h', '7d'] as const;
type Window = (typeof WINDOWS)[number];
/** Which callers the graph shows: everyone, workloads (SPIFFE IDs) or people. */
const SCOPES = ['all', 'workloads', 'people'] as const;
type Scope = (typeof SCOPES)[number];

/** An edge's one id, in the table (`data-id`) and in the canvas. */
export const edgeId = (e: Pick<GraphEdge, 'source' | 'target'>): string => `${e.source} → ${e.target}`;

/** How an edge is drawn and described: denied wins over allowed; unused is the policy's edge alone. */
function edgeClass(e: GraphEdge): 'unused' | 'denied' | 'allowed' | 'other' {
  if (e.unused) return 'unused';
  if (e.denied > 0) return 'denied';
  if (e.allowed > 0) return 'allowed';
  return 'other';
}

/**
 * Cytoscape (about 450 KB) and ELK (about 1.5 MB) load only for this page, each in a chunk of its
 * own: cytoscape while the graph's data is fetched, ELK only once the first view is on screen
 * (compiling it and its layered layout take the main thread for seconds on 1,600 edges, and
 * the first view must not wait for them; bench/console-graph.bench.ts part (b) measured it).
 */
let cytoscapeLib: Promise<typeof cytoscape> | undefined;
let elkLib: Promise<typeof ELK> | undefined;
const loadCytoscape = () => {
  cytoscapeLib ??= import('cytoscape').then((m) => m.default);
  return cytoscapeLib;
};
const loadElk = () => {
  elkLib ??= import('elkjs').then((m) => m.default);
  return elkLib;
};

const STYLE: StylesheetJson = [
  {
    selector: 'node',
    style: {
      label: 'data(label)',
      'font-size': 11,
      'text-valign': 'bottom',
      'text-margin-y': 4,
      'background-color': '#4a5a70',
      width: 18,
      height: 18,
    },
  },
  { selector: 'node.person', style: { shape: 'round-rectangle', 'background-color': '#7a5a9a' } },
  {
    selector: 'edge',
    style: {
      width: 2,
      'curve-style': 'bezier',
      'target-arrow-shape': 'triangle',
      'line-color': '#888',
      'target-arrow-color': '#888',
      label: 'data(label)',
      'font-size': 9,
      'text-background-color': '#fff',
      'text-background-opacity': 1,
    },
  },
  { selector: 'edge.allowed', style: { 'line-color': '#1f8a3b', 'target-arrow-color': '#1f8a3b' } },
  { selector: 'edge.denied', style: { 'line-color': '#c62828', 'target-arrow-color': '#c62828' } },
  {
    selector: 'edge.unused',
    style: { 'line-style': 'dashed', 'line-color': '#1f8a3b', 'target-arrow-color': '#1f8a3b', opacity: 0.7 },
  },
  { selector: 'edge.new', style: { width: 4 } },
  { selector: 'edge:selected', style: { 'line-color': '#1565c0', 'target-arrow-color': '#1565c0', width: 5 } },
];

/**
 * Cytoscape adds a `<style>` element to the page unless one with this id exists; the CSP
 * (`style-src 'self'`) refuses inline styles, and app.css already gives the canvas what that style
 * would (`position: relative`). A placeholder with the id keeps cytoscape from trying.
 */
function preventCytoscapeStyleTag(): void {
  const id = '__________cytoscape_stylesheet';
  if (document.getElementById(id)) return;
  const placeholder = document.createElement('meta');
  placeholder.id = id;
  document.head.append(placeholder);
}

/** Node positions from ELK's layered layout (left to right), by node id. */
async function layeredPositions(g: GraphWire): Promise<Map<string, { x: number; y: number }>> {
  const Elk = await loadElk();
  const elk = new Elk();
  const laid = await elk.layout({
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'RIGHT',
      'elk.spacing.nodeNode': '40',
      'elk.layered.spacing.nodeNodeBetweenLayers': '120',
    },
    children: nodesOf(g).map((n) => ({ id: n.id, width: 30, height: 30 })),
    edges: g.edges.map((e, i) => ({ id: `e${i}`, sources: [e.source], targets: [e.target] })),
  });
  const out = new Map<string, { x: number; y: number }>();
  for (const c of laid.children ?? []) out.set(c.id, { x: (c.x ?? 0) + 15, y: (c.y ?? 0) + 15 });
  return out;
}

/** The graph's nodes, plus any an edge names that the node list lacks (cytoscape refuses dangling edges). */
function nodesOf(g: GraphWire): GraphWire['nodes'] {
  const known = new Set(g.nodes.map((n) => n.id));
  const extra: GraphWire['nodes'] = [];
  for (const id of g.edges.flatMap((e) => [e.source, e.target])) {
    if (known.has(id)) continue;
    known.add(id);
    extra.push({ id, label: id, kind: 'other' });
  }
  return [...g.nodes, ...extra];
}

function elementsOf(g: GraphWire): ElementDefinition[] {
  const nodes: ElementDefinition[] = nodesOf(g).map((n) => ({
    group: 'nodes',
    data: { id: n.id, label: n.label },
    classes: n.kind,
  }));
  const edges: ElementDefinition[] = g.edges.map((e) => ({
    group: 'edges',
    data: { id: edgeId(e), source: e.source, target: e.target, label: e.new ? 'new' : '' },
    classes: [edgeClass(e), e.new ? 'new' : ''].filter(Boolean).join(' '),
  }));
  return [...nodes, ...edges];
}

/** The cytoscape canvas; `selected` is mirrored into it, and a tap on an edge selects it. */
function Canvas(props: { graph: GraphWire; selected: string | null; onSelect: (id: string) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const cy = useRef<Core | null>(null);
  const [error, setError] = useState<string | null>(null);
  const onSelect = useRef(props.onSelect);
  onSelect.current = props.onSelect;
  useEffect(() => {
    let stop = false;
    const fail = (e: unknown) => setError(`graph drawing failed: ${(e as Error).message}`);
    // First view: cytoscape's own breadth-first layout, directed; then ELK's layered one.
    loadCytoscape().then((cytoscape) => {
      if (stop || !box.current) return;
      preventCytoscapeStyleTag();
      const c = cytoscape({
        container: box.current,
        elements: elementsOf(props.graph),
        style: STYLE,
        layout: { name: 'breadthfirst', directed: true, padding: 30 },
        boxSelectionEnabled: false,
      });
      c.on('tap', 'edge', (ev: EventObject) => onSelect.current(ev.target.id()));
      cy.current = c;
      box.current.dataset.layout = 'initial';
      // When each view is on screen (cytoscape draws in the next animation frame), from navigation
      // start: bench/console-graph.bench.ts reads these marks.
      c.one('render', () => {
        performance.mark('graph-layout-initial');
        // ELK after the first frame is painted (a timer, not this frame's work).
        setTimeout(() => {
          if (stop) return;
          layeredPositions(props.graph).then((pos) => {
            if (stop) return;
            c.one('render', () => performance.mark('graph-layout-elk'));
            c.layout({ name: 'preset', positions: Object.fromEntries(pos), fit: true, padding: 30 }).run();
            if (box.current) box.current.dataset.layout = 'elk';
          }, fail);
        }, 0);
      });
    }, fail);
    return () => {
      stop = true;
      cy.current?.destroy();
      cy.current = null;
    };
  }, [props.graph]);
  useEffect(() => {
    const c = cy.current;
    if (!c) return;
    c.edges().unselect();
    if (props.selected) c.getElementById(props.selected).select();
  }, [props.selected]);
  return html`<div class="graph-canvas" ref=${box} role="img" aria-label="Service graph; the edge table lists the same edges">
    <${Alert} error=${error} />
  </div>`;
}

/** The decisions of one edge over the window, newest first, each a link to its page. */
function EdgeDecisions(props: { edge: GraphEdge; graph: GraphWire }) {
  const { edge, graph } = props;
  const list = useLoad(
    (signal) =>
      api<AuditPage>(
        `/v1/admin/audit/events${query({ kind: 'access.decision', source: edge.source, target: edge.target, since: graph.from, until: graph.to, limit: 50 })}`,
        { signal },
      ),
    [edge.source, edge.target, graph.from, graph.to],
  );
  return html`<section aria-labelledby="edge-decisions" data-testid="edge-decisions">
    <h2 id="edge-decisions">Decisions of ${edgeId(edge)}</h2>
    <${Alert} error=${list.error} />
    ${
      edge.unused
        ? html`<p>No decision in this window: the policy allows this call but nobody made it — a candidate for removal.</p>`
        : null
    }
    ${list.data && list.data.events.length === 0 && !edge.unused ? html`<p>No decision found in the window.</p>` : null}
    <ul class="plain">
      ${list.data?.events.map(
        (e) => html`<li>
          <a href=${href('decisions', e.id)}>${fmtTime(e.time)} <span class=${`outcome ${e.outcome ?? ''}`}>${e.outcome}</span>${' '}
            ${[e.target?.method, e.target?.path].filter(Boolean).join(' ')}</a>${e.rule ? ` · rule ${e.rule}` : ''} · ${e.reason ?? ''}
        </li>`,
      )}
    </ul>
  </section>`;
}

/** Enter or Space on a focusable row acts like a click. */
function activate(ev: KeyboardEvent, fn: () => void): void {
  if (ev.key !== 'Enter' && ev.key !== ' ') return;
  ev.preventDefault();
  fn();
}

/** The keyboard-reachable list of the graph's edges; focusing or activating a row selects it. */
function EdgeTable(props: { graph: GraphWire; selected: string | null; onSelect: (id: string) => void }) {
  const label = new Map(props.graph.nodes.map((n) => [n.id, n.label]));
  return html`<table data-testid="graph-table" class="edges">
    <caption>Edges (${props.graph.edges.length}) — Tab to a row to select it</caption>
    <thead><tr><th>From</th><th>To</th><th>Allowed</th><th>Denied</th><th>Last seen</th><th>Policy</th><th>Note</th></tr></thead>
    <tbody>
      ${props.graph.edges.map((e) => {
        const id = edgeId(e);
        const cls = edgeClass(e);
        return html`<tr data-testid="row" data-id=${id} tabindex="0" class=${`${cls}${props.selected === id ? ' selected' : ''}`}
          aria-selected=${props.selected === id}
          onFocus=${() => props.onSelect(id)} onClick=${() => props.onSelect(id)}
          onKeyDown=${(ev: KeyboardEvent) => activate(ev, () => props.onSelect(id))}>
          <td title=${e.source}>${label.get(e.source) ?? e.source}</td>
          <td title=${e.target}>${label.get(e.target) ?? e.target}</td>
          <td class="num">${e.allowed}</td>
          <td class=${`num${e.denied > 0 ? ' bad' : ''}`}>${e.denied}</td>
          <td>${fmtAge(e.last_seen)}</td>
          <td>${e.policy.replace('_', ' ')}</td>
          <td>${[e.new ? 'new' : '', e.unused ? 'unused: least-privilege candidate' : ''].filter(Boolean).join('; ')}</td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}

/**
 * `#/graph`, or `#/graph/<from ISO>..<to ISO>` for a fixed window (a link that shows the same
 * edges later; the window selector says `custom` then, and choosing another leaves it).
 */
export function GraphPage(props: { range?: string }) {
  const [win, setWin] = useState<Window>('1h');
  const [scope, setScope] = useState<Scope>('all');
  const [selected, setSelected] = useState<string | null>(null);
  useEffect(() => void loadCytoscape(), []);
  const range = props.range === undefined ? undefined : parseGraphRange(props.range);
  const graph = useLoad(
    (signal) => {
      if (range && 'error' in range) return Promise.reject(new Error(range.error));
      const when = range ? { from: range.from, to: range.to } : { window: win };
      return api<GraphWire>(`/v1/admin/graph${query({ ...when, scope })}`, { signal });
    },
    [win, scope, props.range],
  );
  const g = graph.data;
  const edge = g?.edges.find((e) => edgeId(e) === selected);
  return html`<${Page} name="graph" title="Service graph" state=${graph.state}>
    <form class="toolbar" onSubmit=${(e: Event) => e.preventDefault()}>
      <label>Window <select value=${range ? 'custom' : win} onChange=${(e: Event) => {
        const v = (e.target as HTMLSelectElement).value;
        if (v === 'custom') return;
        setSelected(null);
        setWin(v as Window);
        if (range) location.hash = href('graph');
      }}>${range ? html`<option value="custom">custom</option>` : null}${WINDOWS.map((w) => html`<option value=${w}>${w}</option>`)}</select></label>
      <label>Callers <select value=${scope} onChange=${(e: Event) => {
        setSelected(null);
        setScope((e.target as HTMLSelectElement).value as Scope);
      }}>${SCOPES.map((c) => html`<option value=${c}>${c}</option>`)}</select></label>
      ${g ? html`<span>${g.events.toLocaleString()} events, ${fmtTime(g.from)} – ${fmtTime(g.to)}, computed in ${g.computed_ms} ms</span>` : null}
      <span class="legend"><span class="allowed">allowed</span> <span class="denied">denied</span>
        <span class="unused">allowed by policy, unused</span> <span class="new">new (thick)</span></span>
    </form>
    <${Alert} error=${graph.error} />
    ${
      g && graph.state !== 'error'
        ? html`<div class="graph-layout">
            <${Canvas} graph=${g} selected=${selected} onSelect=${setSelected} />
            <div class="graph-side">
              <${EdgeTable} graph=${g} selected=${selected} onSelect=${setSelected} />
              ${edge ? html`<${EdgeDecisions} edge=${edge} graph=${g} />` : null}
            </div>
          </div>`
        : null
    }
  <//>`;
}
