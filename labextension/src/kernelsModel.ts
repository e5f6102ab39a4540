/**
 * The flavor kernels as the server lists them (`GET kernels`: the user's, everybody's for an
 * admin), one copy for the whole page. Every view that shows a kernel reads it (the Kernels
 * section, the status bar, a start's progress, a kernel's death, the commands): none of them
 * asks the server itself.
 *
 * It is read when the live stream (re)connects and whenever the server says the kernels
 * changed (`kernels`: one started, stopped or died, or a start moved on to another phase or
 * reason); hints that come together are read once. While nothing is pushed (the stream is
 * down) it is read every `fallback` ms instead, and so it is while a start is followed
 * (`settled`): a start's outcome is never waited on longer than without pushes, even if the
 * push that told of it was lost.
 */
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { ServerConnection } from '@jupyterlab/services';

import { listKernels } from './api';
import { ILiveSource } from './liveStream';
import { IKernel, ILiveMessage } from './tokens';

/** How often the kernels are read while nothing is pushed (ms). */
export const KERNELS_FALLBACK = 5000;

/** How long `kernels` hints are gathered before they are read (ms). */
export const KERNELS_HINT_DELAY = 50;

/** How often a reading that failed while changes are pushed is tried again (ms; backing off). */
export const KERNELS_RETRY = 2000;

/** The longest wait between tries while the server keeps failing (ms). */
export const KERNELS_MAX_BACKOFF = 30000;

/** The page's one copy of `GET kernels`, kept current by what the server pushes. */
export class KernelsModel implements IDisposable {
  /** `live`: where changes come from (started by its owner); `fallback`: see the module. */
  constructor(
    live: ILiveSource,
    settings?: ServerConnection.ISettings,
    fallback: number = KERNELS_FALLBACK
  ) {
    this._settings = settings ?? ServerConnection.makeSettings();
    this._fallback = fallback;
    this._live = live;
    // reads only while nothing is pushed, to retry a reading that failed, or while a start is
    // followed; nothing at all before the stream has said whether it pushes (its hello reads
    // the kernels once)
    this._poll = new Poll({
      factory: () => this.refresh(),
      frequency: { interval: fallback, backoff: true, max: KERNELS_MAX_BACKOFF },
      linger: 0,
      name: 'jupyter-mlinfra:kernels',
      standby: () =>
        !this._heard || (this._pushed && !this._stale && this._followed === 0)
          ? true
          : 'when-hidden'
    });
    live.received.connect(this._onPushed, this);
    live.dropped.connect(this._onDropped, this);
  }

  /** Emitted when the kernels listed differ from the last reading (or on the first one). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Every kernel the server lists: starting, running, then recently stopped or culled. */
  get kernels(): readonly IKernel[] {
    return this._kernels;
  }

  /** Whether the kernels were read at least once. */
  get loaded(): boolean {
    return this._loaded;
  }

  /** Kernel `id` as last listed, or null. */
  get(id: string): IKernel | null {
    return this._kernels.find(k => k.id === id) ?? null;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /**
   * Kernel `id` once its start has settled, as the server's pushes show it: resolves when it
   * runs; rejects with the start's error when it failed, or when it is no longer listed as
   * starting or running (stopped meanwhile). `POST kernels` answers at once with the id, so
   * this is how a start is followed: by its id, never by matching.
   */
  settled(id: string): Promise<IKernel> {
    this._followed++;
    return new Promise<IKernel>((resolve, reject) => {
      let seen = false;
      const check = (): void => {
        const kernel = this.get(id);
        if (kernel?.state === 'starting') {
          seen = true;
          return;
        }
        if (kernel === null && !seen) {
          return; // not listed yet: the server's push of the start is on its way
        }
        this._changed.disconnect(check);
        if (kernel?.state === 'running') {
          resolve(kernel);
        } else {
          const why = kernel?.error?.message || kernel?.reason || kernel?.state || 'not listed';
          reject(new Error(why));
        }
      };
      this._changed.connect(check);
      check();
      this.refresh().catch(() => undefined); // whatever the stream says, look once now
    }).finally(() => this._followed--);
  }

  /** Read the kernels now; rejects with the server's error. */
  async refresh(): Promise<void> {
    const ticket = ++this._asked;
    let kernels: IKernel[];
    try {
      kernels = (await listKernels(this._settings)).kernels;
    } catch (error) {
      this._stale = true; // tried again by the poll
      this._tune();
      throw error;
    }
    if (ticket < this._answered || this._isDisposed) {
      return; // a reading asked later has answered already
    }
    this._answered = ticket;
    this._stale = false;
    this._tune();
    const fresh = JSON.stringify(kernels);
    if (fresh !== this._last || !this._loaded) {
      this._last = fresh;
      this._kernels = kernels;
      this._loaded = true;
      this._changed.emit();
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._poll.dispose();
    window.clearTimeout(this._hintTimer);
    this._live.received.disconnect(this._onPushed, this);
    this._live.dropped.disconnect(this._onDropped, this);
    Signal.clearData(this);
  }

  private _onPushed(_: ILiveSource, message: ILiveMessage): void {
    switch (message.type) {
      case 'hello':
        this._setPushed(message.live);
        this._hint(); // (re)connected: some changes may have been missed
        break;
      case 'live':
        this._setPushed(message.live);
        if (message.live) {
          this._hint();
        }
        break;
      case 'kernels':
        this._hint();
        break;
    }
  }

  private _onDropped(): void {
    this._setPushed(false);
  }

  private _setPushed(pushed: boolean): void {
    this._heard = true;
    this._pushed = pushed;
    this._tune();
  }

  /** While pushed, a failed reading is tried again sooner than the fallback reads come. */
  private _tune(): void {
    const interval = this._pushed && this._stale ? KERNELS_RETRY : this._fallback;
    if (this._poll.frequency.interval !== interval) {
      this._poll.frequency = { interval, backoff: true, max: KERNELS_MAX_BACKOFF };
    }
  }

  /** Read the kernels soon (hints that come together are read once). */
  private _hint(): void {
    if (this._hintTimer === 0) {
      this._hintTimer = window.setTimeout(() => {
        this._hintTimer = 0;
        this.refresh().catch(() => undefined);
      }, KERNELS_HINT_DELAY);
    }
  }

  private _settings: ServerConnection.ISettings;
  private _live: ILiveSource;
  private _poll: Poll;
  private _fallback: number;
  private _heard = false;
  private _pushed = false;
  private _stale = false;
  private _followed = 0;
  private _asked = 0;
  private _answered = 0;
  private _hintTimer = 0;
  private _loaded = false;
  private _last = '';
  private _kernels: IKernel[] = [];
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}
