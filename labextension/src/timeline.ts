/**
 * The Queue timeline section: per flavor, one bar per job over the last hour (or 6 or 24),
 * from when it was queued (hatched while it waited) and started to when it finished (or now).
 */
import { Widget } from '@lumino/widgets';

import { IFlavorList, IJob } from './tokens';

/** A span of time the timeline can show: how far back, its grid step, and its name. */
export interface ITimelineWindow {
  seconds: number;
  step: number;
  label: string;
}

/** The spans offered, the first by default (seconds). */
export const TIMELINE_WINDOWS: readonly ITimelineWindow[] = [
  { seconds: 3600, step: 900, label: 'last hour' },
  { seconds: 6 * 3600, step: 3600, label: 'last 6 hours' },
  { seconds: 24 * 3600, step: 6 * 3600, label: 'last 24 hours' }
];

/** How far back the timeline looks by default (seconds). */
export const TIMELINE_WINDOW = TIMELINE_WINDOWS[0].seconds;

/** A grid line's label: `-45m`, `-6h`, `now`. */
export function tickLabel(secondsAgo: number): string {
  if (secondsAgo === 0) {
    return 'now';
  }
  return secondsAgo < 7200 ? `-${secondsAgo / 60}m` : `-${secondsAgo / 3600}h`;
}

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 300;
const ROW = 12;
const AXIS = 14;

/** A bar's geometry in seconds: [waitFrom, runFrom, to]; runFrom null when it never ran. */
export interface IBarSpan {
  job: IJob;
  waitFrom: number;
  runFrom: number | null;
  to: number;
}

/** The bars of the jobs that overlap [now - window, now], oldest first. */
export function timelineSpans(
  jobs: readonly IJob[],
  now: number,
  window = TIMELINE_WINDOW
): IBarSpan[] {
  const from = now - window;
  return jobs
    .map(job => ({
      job,
      waitFrom: job.created,
      runFrom: job.started,
      to: job.finished ?? now
    }))
    .filter(span => span.to >= from && span.waitFrom <= now)
    .sort((a, b) => a.waitFrom - b.waitFrom);
}

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number>
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    node.setAttribute(key, String(value));
  }
  return node;
}

function clock(seconds: number): string {
  return new Date(seconds * 1000).toLocaleTimeString([], {
    hour: '2-digit',
    minute: '2-digit'
  });
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** The tooltip of a job's bar. */
export function barTitle(span: IBarSpan, now: number): string {
  const job = span.job;
  const lines = [`${job.name || job.id} (${job.owner}) · ${job.state}`];
  if (span.runFrom === null) {
    lines.push(`waiting ${duration(span.to - span.waitFrom)} since ${clock(span.waitFrom)}`);
  } else {
    lines.push(`waited ${duration(span.runFrom - span.waitFrom)}`);
    lines.push(
      `ran ${duration(span.to - span.runFrom)} from ${clock(span.runFrom)}` +
        (job.finished === null ? ' (still running)' : ` to ${clock(span.to)}`)
    );
  }
  if (job.devices.length > 0) {
    lines.push(`accelerators ${job.devices.map(d => d.join(',')).join(' | ')}`);
  }
  if (job.reason) {
    lines.push(job.reason);
  }
  return lines.join('\n');
}

/** One flavor's timeline as an inline SVG. */
export function renderTimeline(
  flavor: string,
  jobs: readonly IJob[],
  now: number,
  window: ITimelineWindow = TIMELINE_WINDOWS[0]
): SVGSVGElement {
  const spans = timelineSpans(jobs, now, window.seconds);
  const height = AXIS + Math.max(1, spans.length) * ROW + 2;
  const from = now - window.seconds;
  const x = (t: number): number => ((Math.max(t, from) - from) / window.seconds) * WIDTH;
  const root = svg('svg', {
    class: 'jp-mlinfra-Timeline-chart',
    viewBox: `0 0 ${WIDTH} ${height}`,
    width: '100%',
    role: 'img',
    'aria-label': `Queue timeline of ${flavor}`
  });
  root.dataset.flavor = flavor;
  const defs = svg('defs', {});
  const pattern = svg('pattern', {
    id: `jp-mlinfra-hatch-${flavor}`,
    width: 4,
    height: 4,
    patternUnits: 'userSpaceOnUse',
    patternTransform: 'rotate(45)'
  });
  pattern.appendChild(
    svg('rect', { width: 2, height: 4, class: 'jp-mlinfra-Timeline-hatch' })
  );
  defs.appendChild(pattern);
  root.appendChild(defs);

  for (let ago = window.seconds; ago >= 0; ago -= window.step) {
    const px = x(now - ago);
    root.appendChild(
      svg('line', { x1: px, x2: px, y1: AXIS - 2, y2: height, class: 'jp-mlinfra-Timeline-grid' })
    );
    const label = svg('text', {
      x: Math.min(Math.max(px, 12), WIDTH - 12),
      y: AXIS - 4,
      'text-anchor': 'middle',
      class: 'jp-mlinfra-Timeline-axis'
    });
    label.textContent = tickLabel(ago);
    root.appendChild(label);
  }

  spans.forEach((span, index) => {
    const y = AXIS + index * ROW + 1;
    const group = svg('g', { class: `jp-mlinfra-Timeline-bar jp-mlinfra-mod-${span.job.state}` });
    group.dataset.jobId = span.job.id;
    const title = svg('title', {});
    title.textContent = barTitle(span, now);
    group.appendChild(title);
    const waitTo = span.runFrom ?? span.to;
    if (waitTo > from) {
      group.appendChild(
        svg('rect', {
          x: x(span.waitFrom),
          y,
          width: Math.max(1, x(waitTo) - x(span.waitFrom)),
          height: ROW - 3,
          fill: `url(#jp-mlinfra-hatch-${flavor})`,
          class: 'jp-mlinfra-Timeline-wait'
        })
      );
    }
    if (span.runFrom !== null) {
      group.appendChild(
        svg('rect', {
          x: x(span.runFrom),
          y,
          width: Math.max(2, x(span.to) - x(span.runFrom)),
          height: ROW - 3,
          rx: 1,
          class: 'jp-mlinfra-Timeline-run'
        })
      );
    }
    root.appendChild(group);
  });
  return root;
}

/** How often a drawn timeline is worth redrawing just because time passed (s). */
export const TIMELINE_TICK = 60;

/**
 * What a drawing depends on: the flavors, what each job's bar shows, and the minute (so
 * running bars grow). Equal keys draw the same picture, so the section skips the redraw.
 */
export function timelineKey(
  names: readonly string[],
  jobs: readonly IJob[],
  now: number,
  window = TIMELINE_WINDOW
): string {
  const bars = jobs.map(j => [
    j.id,
    j.name,
    j.owner,
    j.flavor,
    j.state,
    j.created,
    j.started,
    j.finished,
    j.devices,
    j.reason
  ]);
  return JSON.stringify([names, bars, window, Math.floor(now / TIMELINE_TICK)]);
}

/** A timeline per flavor that had jobs in the chosen span (the last hour at first). */
export class TimelineSection extends Widget {
  constructor() {
    super();
    this.addClass('jp-mlinfra-TimelineSection');
    this.title.label = 'Queue timeline';
    const label = document.createElement('label');
    label.className = 'jp-mlinfra-Timeline-window';
    label.append('Show the ');
    this._window.setAttribute('aria-label', 'Time span');
    for (const [index, span] of TIMELINE_WINDOWS.entries()) {
      const option = document.createElement('option');
      option.value = String(index);
      option.textContent = span.label;
      this._window.appendChild(option);
    }
    this._window.addEventListener('change', () =>
      this.render(this._flavors, this._jobs, Date.now() / 1000, this._complete)
    );
    label.appendChild(this._window);
    this._status.className = 'jp-mlinfra-Section-status';
    this._partial.className = 'jp-mlinfra-Section-status';
    this._partial.hidden = true;
    this.node.append(label, this._status, this._partial, this._charts);
  }

  /** The span shown. */
  get window(): ITimelineWindow {
    return TIMELINE_WINDOWS[Number(this._window.value) || 0];
  }

  /** How many times the charts were drawn (they are only when their data changed). */
  get draws(): number {
    return this._draws;
  }

  /**
   * Draw these jobs, grouped by flavor in the flavors' order, unless nothing changed.
   * `complete`: false when `jobs` is the newest page of a longer list, so that older jobs of
   * the span may be missing (then it says so).
   */
  render(
    flavors: IFlavorList | null,
    jobs: readonly IJob[],
    now = Date.now() / 1000,
    complete = true
  ): void {
    this._flavors = flavors;
    this._jobs = jobs;
    this._complete = complete;
    const window = this.window;
    const oldest = Math.min(...jobs.map(j => j.created));
    this._partial.hidden = complete || oldest <= now - window.seconds;
    this._partial.textContent =
      `Only the ${jobs.length} most recent jobs are drawn: ` +
      `older ones of the ${window.label} are left out.`;
    const names = (flavors?.flavors ?? []).map(f => f.name);
    for (const job of jobs) {
      if (!names.includes(job.flavor)) {
        names.push(job.flavor);
      }
    }
    const key = timelineKey(names, jobs, now, window.seconds);
    if (key === this._key) {
      return;
    }
    this._key = key;
    this._draws++;
    this._charts.replaceChildren();
    let drawn = 0;
    for (const name of names) {
      const own = jobs.filter(j => j.flavor === name);
      if (timelineSpans(own, now, window.seconds).length === 0) {
        continue;
      }
      const figure = document.createElement('figure');
      figure.className = 'jp-mlinfra-Timeline';
      const caption = document.createElement('figcaption');
      caption.textContent = name;
      figure.append(caption, renderTimeline(name, own, now, window));
      this._charts.appendChild(figure);
      drawn++;
    }
    this._status.textContent = `No jobs in the ${window.label}.`;
    this._status.hidden = drawn > 0;
  }

  private _window = document.createElement('select');
  private _partial = document.createElement('p');
  private _complete = true;
  private _flavors: IFlavorList | null = null;
  private _jobs: readonly IJob[] = [];
  private _status = document.createElement('p');
  private _charts = document.createElement('div');
  private _key = '';
  private _draws = 0;
}
