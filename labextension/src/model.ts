/**
 * The state behind the sidebar panel: flavors, kernels and jobs, kept fresh by a poll.
 *
 * Only this module talks to `api.ts` on the panel's behalf; widgets read the model and listen
 * to its signals.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import { IDisposable } from '@lumino/disposable';

import { ServerConnection } from '@jupyterlab/services';

import {
  cancelJob,
  listEnvironments,
  listFlavors,
  listJobs,
  listKernels,
  MLInfraError,
  retryJob,
  whoami
} from './api';
import { activeKernels } from './kernelStarts';
import { IEnvironmentList, IFlavorList, IJob, IKernel, IWhoAmI, JobState } from './tokens';

/** How often the model refreshes while the panel is visible (ms). */
export const REFRESH_INTERVAL = 2000;

/** The longest wait between tries while the server keeps failing (ms). */
export const MAX_BACKOFF = 30000;

/** How many jobs the panel lists. */
export const JOB_LIMIT = 100;

/** How many recent jobs (of any state) the queue timeline draws. */
export const TIMELINE_JOB_LIMIT = 200;

/** The message of any error, for people. */
export function errorMessage(error: unknown): string {
  if (error instanceof MLInfraError || error instanceof Error) {
    return error.message;
  }
  return String(error);
}

/** Flavors, kernels and jobs of the current user, refreshed every 2 s while someone looks. */
export class MLInfraModel implements IDisposable {
  /** `settings`: the server to ask (this page's by default). */
  constructor(settings?: ServerConnection.ISettings) {
    this._settings = settings ?? ServerConnection.makeSettings();
    this._poll = new Poll({
      factory: () => this._fetch(true),
      frequency: { interval: REFRESH_INTERVAL, backoff: true, max: MAX_BACKOFF },
      linger: 0, // a tab sent to the background stops asking at once
      name: 'jupyter-mlinfra:model',
      standby: () => (this._visible ? 'when-hidden' : true)
    });
  }

  /** Emitted whenever flavors, jobs, the filter or the error change. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted with the server's message when a refresh starts failing (once per message). */
  get failed(): ISignal<this, string> {
    return this._failed;
  }

  /** The flavors, or null before the first answer. */
  get flavors(): IFlavorList | null {
    return this._flavors;
  }

  /** The environments the user may use, or null before the first answer. */
  get environments(): IEnvironmentList | null {
    return this._environments;
  }

  /** The most recent jobs of any state, newest first, for the queue timeline. */
  get timelineJobs(): readonly IJob[] {
    return this._timelineJobs;
  }

  /** Whether `timelineJobs` are all the jobs there are (no older page). */
  get timelineComplete(): boolean {
    return this._timelineComplete;
  }

  /** The jobs that pass the state filter, newest first. */
  get jobs(): readonly IJob[] {
    return this._jobs;
  }

  /** The user's starting kernels (with their phase and reason), then their running ones. */
  get kernels(): readonly IKernel[] {
    return this._kernels;
  }

  /** Whether at least one refresh has succeeded. */
  get loaded(): boolean {
    return this._loaded;
  }

  /** The last refresh's error, or null when it succeeded. */
  get error(): string | null {
    return this._error;
  }

  /** The current user, or null before the first answer. */
  get user(): IWhoAmI | null {
    return this._user;
  }

  /** Admins only: list everybody's jobs instead of their own. */
  get allUsers(): boolean {
    return this._allUsers;
  }
  set allUsers(value: boolean) {
    if (value === this._allUsers) {
      return;
    }
    this._allUsers = value;
    this._changed.emit();
    void this.refresh().catch(() => undefined);
  }

  /** Only jobs in these states are listed; empty for all. */
  get stateFilter(): readonly JobState[] {
    return this._stateFilter;
  }
  set stateFilter(states: readonly JobState[]) {
    if (states.join(',') === this._stateFilter.join(',')) {
      return;
    }
    this._stateFilter = [...states];
    this._changed.emit();
    void this.refresh().catch(() => undefined);
  }

  /** Whether the panel is on screen: the poll stands by while it is not. */
  get visible(): boolean {
    return this._visible;
  }
  set visible(value: boolean) {
    if (value === this._visible) {
      return;
    }
    this._visible = value;
    if (value) {
      void this._poll.refresh();
    }
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Refresh now, even while hidden; rejects with the server's error. */
  refresh(): Promise<void> {
    return this._fetch(false);
  }

  /** Cancel a job, then refresh. Rejects with the server's error. */
  async cancel(id: string): Promise<IJob> {
    const job = await cancelJob(id, this._settings);
    this._replace(job);
    void this._poll.refresh();
    return job;
  }

  /** Queue a finished job again, then refresh. Rejects with the server's error. */
  async retry(id: string): Promise<IJob> {
    const job = await retryJob(id, this._settings);
    void this._poll.refresh();
    return job;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._poll.dispose();
    Signal.clearData(this);
  }

  /** Fetch flavors and jobs; `notify`: emit `failed` when a new error starts. */
  private async _fetch(notify: boolean): Promise<void> {
    const filter = this._stateFilter;
    const allUsers = this._allUsers;
    const settings = this._settings;
    try {
      const user = this._user ?? (await whoami(settings));
      // an admin sees everybody's jobs unless they ask for their own
      const owner = user.admin && !allUsers ? user.user : undefined;
      const [flavors, jobs, environments, recent, kernels] = await Promise.all([
        listFlavors(settings),
        listJobs({ state: filter, owner, limit: JOB_LIMIT }, settings),
        listEnvironments(settings),
        listJobs({ owner, limit: TIMELINE_JOB_LIMIT }, settings),
        listKernels(settings)
      ]);
      const mine = activeKernels(kernels.kernels, user.user);
      if (filter !== this._stateFilter || allUsers !== this._allUsers) {
        return; // the filter changed meanwhile; its own refresh follows
      }
      const fresh = JSON.stringify([flavors, jobs.jobs, environments, recent, mine]);
      const wasFailing = this._error !== null;
      this._error = null;
      if (fresh !== this._last || wasFailing || !this._loaded || this._user !== user) {
        this._last = fresh;
        this._user = user;
        this._flavors = flavors;
        this._jobs = jobs.jobs;
        this._environments = environments;
        this._timelineJobs = recent.jobs;
        this._timelineComplete = recent.next === null;
        this._kernels = mine;
        this._loaded = true;
        this._changed.emit();
      }
    } catch (error) {
      const message = errorMessage(error);
      if (message !== this._error) {
        this._error = message;
        this._changed.emit();
        if (notify) {
          this._failed.emit(message);
        }
      }
      throw error; // the poll backs off
    }
  }

  /** Show an action's answer at once, before the next refresh. */
  private _replace(job: IJob): void {
    const index = this._jobs.findIndex(j => j.id === job.id);
    if (index < 0) {
      return;
    }
    const jobs = [...this._jobs];
    jobs[index] = job;
    this._jobs = jobs;
    this._last = '';
    this._changed.emit();
  }

  private _settings: ServerConnection.ISettings;
  private _poll: Poll;
  private _user: IWhoAmI | null = null;
  private _allUsers = false;
  private _visible = false;
  private _isDisposed = false;
  private _loaded = false;
  private _flavors: IFlavorList | null = null;
  private _jobs: IJob[] = [];
  private _environments: IEnvironmentList | null = null;
  private _timelineJobs: IJob[] = [];
  private _timelineComplete = true;
  private _kernels: IKernel[] = [];
  private _stateFilter: JobState[] = [];
  private _error: string | null = null;
  private _last = '';
  private _changed = new Signal<this, void>(this);
  private _failed = new Signal<this, string>(this);
}
