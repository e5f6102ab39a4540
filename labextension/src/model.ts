/**
 * The state behind the sidebar panel: flavors, kernels and jobs, kept fresh by what the server
 * pushes (`liveStream.ts`), read in full only when the stream (re)connects; a slow poll only
 * while no changes are pushed. The kernels are the page's one `KernelsModel`, which this owns
 * and the other views read too.
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
  MLInfraError,
  retryJob,
  whoami
} from './api';
import { holdsResources, mergeJob } from './jobMerge';
import { activeKernels } from './kernelStarts';
import { KernelsModel } from './kernelsModel';
import { ILiveSource, LiveStream } from './liveStream';
import {
  IEnvironmentList,
  IFlavorList,
  IJob,
  IKernel,
  ILiveMessage,
  IWhoAmI,
  JobState
} from './tokens';

/** How often the model reads everything while the panel is visible and nothing is pushed (ms). */
export const FALLBACK_INTERVAL = 15000;

/** How soon a reading that failed while changes are pushed is tried again (ms; then backs off). */
export const RETRY_INTERVAL = 2000;

/** How long pushed hints (capacity) are gathered before they are read (ms). */
export const HINT_DELAY = 50;

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

/** Flavors, kernels and jobs of the current user, as the server pushes their changes. */
export class MLInfraModel implements IDisposable {
  /**
   * `settings`: the server to ask (this page's by default); `live`: where changes come from
   * (the server's websocket by default); `fallback`: the slow poll's interval (ms).
   */
  constructor(
    settings?: ServerConnection.ISettings,
    live?: ILiveSource,
    fallback: number = FALLBACK_INTERVAL
  ) {
    this._settings = settings ?? ServerConnection.makeSettings();
    this._fallback = fallback;
    // reads everything: every `fallback` ms while nothing is pushed, and, while changes are
    // pushed, only to retry a reading that failed
    this._poll = new Poll({
      factory: () => this._fetch(true),
      frequency: { interval: fallback, backoff: true, max: MAX_BACKOFF },
      linger: 0, // a tab sent to the background stops asking at once
      name: 'jupyter-mlinfra:model',
      standby: () => (!this._visible || (this._live && !this._stale) ? true : 'when-hidden')
    });
    this._source = live ?? new LiveStream(this._settings);
    this._source.received.connect(this._onPushed, this);
    this._source.dropped.connect(this._onDropped, this);
    this._allKernels = new KernelsModel(this._source, this._settings);
    this._allKernels.changed.connect(this._onKernels, this);
    this._source.start();
  }

  /** Every kernel the server lists, for every view of the page, kept current by pushes. */
  get allKernels(): KernelsModel {
    return this._allKernels;
  }

  /** Emitted with a job whenever the server pushes a change of it. */
  get jobChanged(): ISignal<this, IJob> {
    return this._jobChanged;
  }

  /** Whether changes are pushed now: when not, views that show a job read it themselves. */
  get live(): boolean {
    return this._live;
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

  /** Whether the panel is on screen: nothing is read while it is not. */
  get visible(): boolean {
    return this._visible;
  }
  set visible(value: boolean) {
    if (value === this._visible) {
      return;
    }
    this._visible = value;
    if (value && (this._stale || !this._loaded)) {
      void this._fetch(true).catch(() => undefined);
    }
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Refresh now, even while hidden, kernels included; rejects with the server's error. */
  async refresh(): Promise<void> {
    await Promise.all([this._fetch(false), this._allKernels.refresh()]);
  }

  /** Cancel a job, shown at once. Rejects with the server's error. */
  async cancel(id: string): Promise<IJob> {
    const job = await cancelJob(id, this._settings);
    this._apply(job);
    this._unlessLive();
    return job;
  }

  /** Queue a finished job again, shown at once. Rejects with the server's error. */
  async retry(id: string): Promise<IJob> {
    const job = await retryJob(id, this._settings);
    this._apply(job);
    this._unlessLive();
    return job;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._poll.dispose();
    this._allKernels.dispose();
    this._source.dispose();
    window.clearTimeout(this._hintTimer);
    Signal.clearData(this);
  }

  /** What the server pushed. */
  private _onPushed(_: ILiveSource, message: ILiveMessage): void {
    switch (message.type) {
      case 'hello':
      case 'live':
        this._setLive(message.live);
        break;
      case 'job':
        if (this._fetching > 0 || !this._loaded) {
          this._held.push(message.job); // applied after the reading under way, in order
        } else {
          this._apply(message.job);
        }
        break;
      case 'kernels': // the kernels model reads them; kernels hold capacity too
      case 'capacity':
        this._hintFlavors();
        break;
    }
  }

  private _onDropped(): void {
    this._setLive(false); // the slow poll takes over until the stream is back
  }

  /** Changes are pushed again (read everything once: some may have been missed), or not. */
  private _setLive(live: boolean): void {
    this._live = live;
    const interval = live ? RETRY_INTERVAL : this._fallback;
    if (this._poll.frequency.interval !== interval) {
      this._poll.frequency = { interval, backoff: true, max: MAX_BACKOFF };
    }
    if (!live) {
      return;
    }
    if (this._visible) {
      void this._fetch(false).catch(() => undefined);
    } else {
      this._stale = true;
    }
  }

  /** Without live updates, an action's effects are read at once. */
  private _unlessLive(): void {
    if (!this._live) {
      void this._fetch(false).catch(() => undefined);
    }
  }

  /** Read the flavors again soon (hints that come together are read once). */
  private _hintFlavors(): void {
    if (this._hintTimer === 0) {
      this._hintTimer = window.setTimeout(() => void this._readFlavors(), HINT_DELAY);
    }
  }

  private async _readFlavors(): Promise<void> {
    this._hintTimer = 0;
    if (!this._visible || !this._loaded) {
      this._stale = true; // read in full when the panel shows
      return;
    }
    try {
      this._flavors = await listFlavors(this._settings);
      this._last = '';
      this._changed.emit();
    } catch {
      this._stale = true; // the next hint, or showing the panel, reads it again
    }
  }

  /** The kernels model read the kernels anew: the user's, as the sidebar lists them. */
  private _onKernels(): void {
    const user = this._user;
    if (user === null || !this._loaded) {
      return; // the first reading shows them
    }
    const mine = activeKernels(this._allKernels.kernels, user.user);
    if (JSON.stringify(mine) !== JSON.stringify(this._kernels)) {
      this._kernels = mine;
      this._changed.emit();
    }
  }

  /** Fetch flavors and jobs; `notify`: emit `failed` when a new error starts. */
  private async _fetch(notify: boolean): Promise<void> {
    this._fetching++;
    try {
      await this._read(notify);
    } finally {
      this._fetching--;
      if (this._fetching === 0) {
        const held = this._held;
        this._held = [];
        held.forEach(job => this._apply(job));
      }
    }
  }

  private async _read(notify: boolean): Promise<void> {
    const filter = this._stateFilter;
    const allUsers = this._allUsers;
    const settings = this._settings;
    this._stale = false;
    try {
      const user = this._user ?? (await whoami(settings));
      // an admin sees everybody's jobs unless they ask for their own
      const owner = user.admin && !allUsers ? user.user : undefined;
      const [flavors, jobs, environments, recent] = await Promise.all([
        listFlavors(settings),
        listJobs({ state: filter, owner, limit: JOB_LIMIT }, settings),
        listEnvironments(settings),
        listJobs({ owner, limit: TIMELINE_JOB_LIMIT }, settings)
      ]);
      if (filter !== this._stateFilter || allUsers !== this._allUsers) {
        return; // the filter changed meanwhile; its own refresh follows
      }
      // the kernels are the kernels model's, whose changes are told as they come
      const fresh = JSON.stringify([flavors, jobs.jobs, environments, recent]);
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
        this._kernels = activeKernels(this._allKernels.kernels, user.user);
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
      this._stale = true;
      throw error; // the poll backs off
    }
  }

  /** Show a job as it is now (pushed, or an action's answer) in the lists it belongs to. */
  private _apply(job: IJob): void {
    const user = this._user;
    if (user === null || !this._loaded) {
      return; // the first reading shows it
    }
    const owner = user.admin && !this._allUsers ? user.user : null;
    const mine = owner === null || job.owner === owner;
    const filter = this._stateFilter;
    const before = [...this._timelineJobs, ...this._jobs].find(j => j.id === job.id);
    const listed = mine && (filter.length === 0 || filter.includes(job.state));
    this._jobs = mergeJob(this._jobs, job, listed, JOB_LIMIT);
    this._timelineJobs = mergeJob(this._timelineJobs, job, mine, TIMELINE_JOB_LIMIT);
    this._last = '';
    if (holdsResources(before?.state) !== holdsResources(job.state)) {
      this._hintFlavors();
    }
    this._changed.emit();
    this._jobChanged.emit(job);
  }

  private _settings: ServerConnection.ISettings;
  private _poll: Poll;
  private _fallback: number;
  private _source: ILiveSource;
  private _allKernels: KernelsModel;
  private _live = false;
  private _stale = false;
  private _fetching = 0;
  private _held: IJob[] = [];
  private _hintTimer = 0;
  private _jobChanged = new Signal<this, IJob>(this);
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
