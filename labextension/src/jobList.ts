/**
 * The Jobs section of the sidebar: one row per job with its actions (logs, cancel, retry,
 * copy id), a state filter, and for admins an "All users" switch that adds an owner column.
 *
 * Rows are kept by job id and updated in place, so a refresh never takes the keyboard focus
 * away from a button.
 */
import { Widget } from '@lumino/widgets';

import { detailText, isActive, ranksText } from './jobText';
import { renderRows, span } from './rows';
import { ACTIVE_JOB_STATES, IJob, JOB_STATES, JobState } from './tokens';

/** The actions a row offers; the panel carries them out. */
export interface IJobActions {
  logs(job: IJob): void;
  cancel(job: IJob): void;
  retry(job: IJob): void;
  copyId(job: IJob): void;
}

/** The choices of the state filter: a label and the states it keeps (none: all). */
export const STATE_FILTERS: readonly { label: string; states: JobState[] }[] = [
  { label: 'All states', states: [] },
  { label: 'Active', states: [...ACTIVE_JOB_STATES] },
  ...JOB_STATES.map(state => ({ label: state, states: [state] }))
];

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
  constructor(job: IJob, actions: IJobActions, showOwner: boolean) {
    this._job = job;
    this.node.className = 'jp-mlinfra-JobRow';
    this._detail.className = 'jp-mlinfra-JobRow-detail';
    this._reason.className = 'jp-mlinfra-JobRow-reason';
    const head = document.createElement('div');
    head.className = 'jp-mlinfra-JobRow-head';
    head.append(this._name, this._id, this._state);
    const meta = document.createElement('div');
    meta.className = 'jp-mlinfra-JobRow-meta';
    meta.append(this._owner, this._flavor, this._ranks);
    const buttons = document.createElement('div');
    buttons.className = 'jp-mlinfra-JobRow-actions';
    this._logs = button('Logs', '', () => actions.logs(this._job));
    this._cancel = button('Cancel', 'jp-mod-warn', () => actions.cancel(this._job));
    this._retry = button('Retry', '', () => actions.retry(this._job));
    this._copy = button('Copy id', '', () => actions.copyId(this._job));
    buttons.append(this._logs, this._cancel, this._retry, this._copy);
    this.node.append(head, meta, this._detail, this._reason, buttons);
    this.update(job, showOwner);
  }

  readonly node = document.createElement('li');

  update(job: IJob, showOwner: boolean): void {
    this._job = job;
    this._owner.textContent = job.owner;
    this._owner.title = `Owner: ${job.owner}`;
    this._owner.hidden = !showOwner;
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
    this._reason.hidden = job.reason === '' || job.reason === job.state; // said by the badge
    const active = isActive(job);
    this._cancel.hidden = !active;
    this._cancel.setAttribute('aria-label', `Cancel job ${label}`);
    this._retry.hidden = active;
    this._retry.setAttribute('aria-label', `Retry job ${label}`);
    this._logs.setAttribute('aria-label', `Logs of job ${label}`);
    this._copy.setAttribute('aria-label', `Copy the id of job ${label}`);
  }

  private _job: IJob;
  private _name = span('jp-mlinfra-JobRow-name');
  private _owner = span('jp-mlinfra-JobRow-owner');
  private _state = span('jp-mlinfra-JobState');
  private _flavor = span('jp-mlinfra-JobRow-flavor');
  private _ranks = span('jp-mlinfra-JobRow-ranks');
  private _id = span('jp-mlinfra-JobRow-id');
  private _detail = document.createElement('div');
  private _reason = document.createElement('div');
  private _logs: HTMLButtonElement;
  private _cancel: HTMLButtonElement;
  private _retry: HTMLButtonElement;
  private _copy: HTMLButtonElement;
}

/** What the Jobs section's controls change; the panel applies it to the model. */
export interface IJobFilters {
  states(states: JobState[]): void;
  allUsers(all: boolean): void;
}

/** The jobs list with its state filter and, for admins, the "All users" switch. */
export class JobsSection extends Widget {
  constructor(actions: IJobActions, filters: IJobFilters) {
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
      filters.states([...STATE_FILTERS[Number(select.value)].states]);
    });
    bar.appendChild(select);

    this._allUsers.className = 'jp-mlinfra-JobsSection-allUsers';
    this._allUsers.title = "Admins: show every user's jobs, with their owner";
    const everybody = document.createElement('input');
    everybody.type = 'checkbox';
    everybody.addEventListener('change', () => filters.allUsers(everybody.checked));
    this._allUsers.append(everybody, ' All users');
    this._allUsers.hidden = true;

    this._status.className = 'jp-mlinfra-Section-status';
    this._status.textContent = 'Loading jobs…';
    this._list.className = 'jp-mlinfra-JobList';
    this._list.setAttribute('aria-label', 'Jobs');
    const controls = document.createElement('div');
    controls.className = 'jp-mlinfra-JobsSection-controls';
    controls.append(bar, this._allUsers);
    this.node.append(controls, this._status, this._list);
  }

  /**
   * Show these jobs, in this order (`loaded`: false before the first answer); `admin` offers
   * the "All users" switch, `allUsers` shows each job's owner.
   */
  render(
    jobs: readonly IJob[],
    loaded: boolean,
    view: { admin: boolean; allUsers: boolean } = { admin: false, allUsers: false }
  ): void {
    this._allUsers.hidden = !view.admin;
    const showOwner = view.admin && view.allUsers;
    this.toggleClass('jp-mod-allUsers', showOwner);
    renderRows(
      this._list,
      this._rows,
      jobs,
      job => new JobRow(job, this._actions, showOwner),
      (row, job) => row.update(job, showOwner)
    );
    this._status.hidden = loaded && jobs.length > 0;
    this._status.textContent = loaded ? 'No jobs.' : 'Loading jobs…';
  }

  private _actions: IJobActions;
  private _rows = new Map<string, JobRow>();
  private _list = document.createElement('ul');
  private _status = document.createElement('p');
  private _allUsers = document.createElement('label');
}
