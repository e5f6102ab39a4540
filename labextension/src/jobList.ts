/**
 * The Jobs section of the sidebar: one row per job, a state filter, cancel and retry.
 *
 * Rows are kept by job id and updated in place, so a refresh never takes the keyboard focus
 * away from a button.
 */
import { Widget } from '@lumino/widgets';

import { ACTIVE_JOB_STATES, IJob, JOB_STATES, JobState } from './tokens';

/** The actions a row offers; the panel carries them out. */
export interface IJobActions {
  cancel(job: IJob): void;
  retry(job: IJob): void;
}

/** The choices of the state filter: a label and the states it keeps (none: all). */
export const STATE_FILTERS: readonly { label: string; states: JobState[] }[] = [
  { label: 'All states', states: [] },
  { label: 'Active', states: [...ACTIVE_JOB_STATES] },
  ...JOB_STATES.map(state => ({ label: state, states: [state] }))
];

/** Whether a job still waits or runs. */
export function isActive(job: IJob): boolean {
  return ACTIVE_JOB_STATES.includes(job.state);
}

/** `1 min 5 s`, `2 h 3 min`: a duration for people. */
export function durationText(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    const rest = s % 60;
    return rest ? `${Math.floor(s / 60)} min ${rest} s` : `${s / 60} min`;
  }
  const minutes = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h${minutes ? ` ${minutes} min` : ''}`;
}

/** `1 node × 4 ranks`: how the job is spread. */
export function ranksText(job: IJob): string {
  const nodes = `${job.nodes} ${job.nodes === 1 ? 'node' : 'nodes'}`;
  const procs = job.procs_per_node;
  return procs > 0 ? `${nodes} × ${procs} ${procs === 1 ? 'rank' : 'ranks'}` : nodes;
}

/** The line under a job: position, reason and ETA while queued; runtime and outcome after. */
export function detailText(job: IJob, now: number = Date.now() / 1000): string {
  const parts: string[] = [];
  if (job.state === 'queued') {
    if (job.position !== null) {
      parts.push(`position ${job.position}`);
    }
    if (job.eta !== null) {
      const wait = job.eta - now;
      parts.push(wait > 0 ? `ETA in ${durationText(wait)}` : 'ETA now');
    }
  } else if (job.started !== null) {
    parts.push(`ran ${durationText((job.finished ?? now) - job.started)}`);
  }
  if (job.exit_code !== null && job.state !== 'succeeded') {
    parts.push(`exit ${job.exit_code}`);
  }
  return parts.join(' · ');
}

function span(className: string): HTMLSpanElement {
  const node = document.createElement('span');
  node.className = className;
  return node;
}

function button(label: string, className: string, onClick: () => void): HTMLButtonElement {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = `jp-mlinfra-JobRow-action ${className}`;
  node.textContent = label;
  node.addEventListener('click', onClick);
  return node;
}

/** One job, as an `<li>` updated in place. */
class JobRow {
  constructor(job: IJob, actions: IJobActions) {
    this._job = job;
    this.node.className = 'jp-mlinfra-JobRow';
    this._detail.className = 'jp-mlinfra-JobRow-detail';
    this._reason.className = 'jp-mlinfra-JobRow-reason';
    const head = document.createElement('div');
    head.className = 'jp-mlinfra-JobRow-head';
    head.append(this._name, this._state);
    const meta = document.createElement('div');
    meta.className = 'jp-mlinfra-JobRow-meta';
    meta.append(this._flavor, this._ranks, this._id);
    const buttons = document.createElement('div');
    buttons.className = 'jp-mlinfra-JobRow-actions';
    this._cancel = button('Cancel', 'jp-mod-warn', () => actions.cancel(this._job));
    this._retry = button('Retry', '', () => actions.retry(this._job));
    buttons.append(this._cancel, this._retry);
    this.node.append(head, meta, this._detail, this._reason, buttons);
    this.update(job);
  }

  readonly node = document.createElement('li');

  update(job: IJob): void {
    this._job = job;
    const label = job.name || job.id;
    this.node.dataset.jobId = job.id;
    this.node.dataset.state = job.state;
    this.node.setAttribute('aria-label', `Job ${label}: ${job.state}`);
    this._name.textContent = label;
    this._name.title = job.id;
    this._state.textContent = job.state;
    this._state.className = `jp-mlinfra-JobState jp-mlinfra-mod-${job.state}`;
    this._flavor.textContent = job.flavor;
    this._ranks.textContent = ranksText(job);
    this._id.textContent = job.id;
    this._detail.textContent = detailText(job);
    this._detail.hidden = this._detail.textContent === '';
    this._reason.textContent = job.reason;
    this._reason.hidden = job.reason === '';
    const active = isActive(job);
    this._cancel.hidden = !active;
    this._cancel.setAttribute('aria-label', `Cancel job ${label}`);
    this._retry.hidden = active;
    this._retry.setAttribute('aria-label', `Retry job ${label}`);
  }

  private _job: IJob;
  private _name = span('jp-mlinfra-JobRow-name');
  private _state = span('jp-mlinfra-JobState');
  private _flavor = span('jp-mlinfra-JobRow-flavor');
  private _ranks = span('jp-mlinfra-JobRow-ranks');
  private _id = span('jp-mlinfra-JobRow-id');
  private _detail = document.createElement('div');
  private _reason = document.createElement('div');
  private _cancel: HTMLButtonElement;
  private _retry: HTMLButtonElement;
}

/** The jobs list with its state filter. */
export class JobsSection extends Widget {
  constructor(actions: IJobActions, onFilter: (states: JobState[]) => void) {
    super();
    this._actions = actions;
    this.addClass('jp-mlinfra-JobsSection');
    this.title.label = 'Jobs';

    const bar = document.createElement('label');
    bar.className = 'jp-mlinfra-JobsSection-filter';
    bar.append('Show ');
    const select = document.createElement('select');
    select.setAttribute('aria-label', 'Filter jobs by state');
    STATE_FILTERS.forEach((choice, index) => {
      const option = document.createElement('option');
      option.value = String(index);
      option.textContent = choice.label;
      select.appendChild(option);
    });
    select.addEventListener('change', () => {
      onFilter([...STATE_FILTERS[Number(select.value)].states]);
    });
    bar.appendChild(select);

    this._status.className = 'jp-mlinfra-Section-status';
    this._status.textContent = 'Loading jobs…';
    this._list.className = 'jp-mlinfra-JobList';
    this._list.setAttribute('aria-label', 'Jobs');
    this.node.append(bar, this._status, this._list);
  }

  /** Show these jobs, in this order (`loaded`: false before the first answer). */
  render(jobs: readonly IJob[], loaded: boolean): void {
    const seen = new Set<string>();
    jobs.forEach((job, index) => {
      seen.add(job.id);
      let row = this._rows.get(job.id);
      if (row) {
        row.update(job);
      } else {
        row = new JobRow(job, this._actions);
        this._rows.set(job.id, row);
      }
      if (this._list.children[index] !== row.node) {
        this._list.insertBefore(row.node, this._list.children[index] ?? null);
      }
    });
    for (const [id, row] of this._rows) {
      if (!seen.has(id)) {
        row.node.remove();
        this._rows.delete(id);
      }
    }
    this._status.hidden = loaded && jobs.length > 0;
    this._status.textContent = loaded ? 'No jobs.' : 'Loading jobs…';
  }

  private _actions: IJobActions;
  private _rows = new Map<string, JobRow>();
  private _list = document.createElement('ul');
  private _status = document.createElement('p');
}
