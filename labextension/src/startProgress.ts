/**
 * Starts this page waits on, shown while they last: `POST kernels` answers only once the
 * kernel is ready (a pod may first wait for a node and pull an image for minutes), so while it
 * is pending this asks `GET kernels` where the start is and tells the user in a notification
 * that updates in place, and tells listeners (the status bar) too.
 */
import { Notification } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { listKernels } from './api';
import { findStart, IStartRequest, progressMessage } from './kernelStarts';
import { errorMessage } from './model';
import { IKernel } from './tokens';

/** How often a pending start is looked up (ms). */
export const PROGRESS_INTERVAL = 1000;

/** How long the "ready" notification stays (ms). */
export const READY_CLOSE = 3000;

/** One start under way: what was asked for and, once listed, its kernel. */
export interface IStartProgress {
  readonly request: IStartRequest;
  /** The starting kernel as last listed, or null before the server lists it. */
  readonly kernel: IKernel | null;
}

/** How a start's failure is told. */
export interface ITrackOptions {
  /** Close the notification on failure: whoever ran the start shows the server's reason. */
  quietFailure?: boolean;
  /** The kernel this starts again elsewhere (a flavor switch keeps the kernel's id). */
  kernelId?: string;
}

/** The kernel starts this page waits on, each with its notification. */
export class KernelStartProgress {
  /** `settings`: the server to ask (this page's by default). */
  constructor(settings?: ServerConnection.ISettings) {
    this._settings = settings ?? ServerConnection.makeSettings();
  }

  /** Emitted when a start begins, moves to another phase or reason, or ends. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The most recent start still under way, or null. */
  get current(): IStartProgress | null {
    return this._starts.length > 0 ? this._starts[this._starts.length - 1] : null;
  }

  /**
   * Run `start` (the request that starts a kernel of `environment` on `flavor` and answers
   * once it is ready), showing its progress until it settles; answers or rethrows its result.
   * The notification, shown once the server lists the start, ends as "ready" (closing by
   * itself); a failure shows the server's error (or, with `quietFailure`, closes it).
   */
  async track<T>(
    flavor: string,
    environment: string,
    start: () => Promise<T>,
    options: ITrackOptions = {}
  ): Promise<T> {
    // kernels already starting stay candidates: a notebook's own start is under way by the time
    // it is followed, so the server may list it already
    const known = new Set<string>();
    try {
      for (const kernel of (await listKernels(this._settings)).kernels) {
        if (kernel.state !== 'starting') {
          known.add(kernel.id);
        }
      }
    } catch {
      // the start itself will say what is wrong with the server
    }
    const progress: { request: IStartRequest; kernel: IKernel | null } = {
      request: { flavor, environment, known, kernelId: options.kernelId },
      kernel: null
    };
    // no notification until the server lists the start as under way: a kernel that is ready
    // within a second (the local backend) needs none
    let id: string | null = null;
    const show = (
      message: string,
      type: Notification.TypeOptions,
      autoClose: number | false
    ): void => {
      if (id === null) {
        id = Notification.emit(message, type, { autoClose });
      } else {
        Notification.update({ id, message, type, autoClose });
      }
    };
    this._starts.push(progress);
    this._changed.emit();
    let pending = true;
    const follow = async (): Promise<void> => {
      while (pending) {
        await new Promise(resolve => setTimeout(resolve, PROGRESS_INTERVAL));
        if (!pending) {
          return;
        }
        let kernel: IKernel | null;
        try {
          const { kernels } = await listKernels(this._settings);
          // once found, a start keeps its kernel; the claim is made without a pause in between
          const found = progress.kernel;
          kernel =
            found === null
              ? findStart(kernels, { ...progress.request, known: this._claimed(progress) })
              : (kernels.find(k => k.id === found.id) ?? null);
        } catch {
          continue; // the start's own answer reports a failing server
        }
        // shown anew even unchanged: how long its phase has lasted grows
        if (pending && kernel !== null) {
          progress.kernel = kernel;
          show(progressMessage(flavor, kernel), 'in-progress', false);
          this._changed.emit();
        }
      }
    };
    void follow();
    try {
      const result = await start();
      if (id !== null) {
        const where = progress.kernel?.flavor || flavor || 'the default flavor';
        show(`Kernel ready on ${where}`, 'success', READY_CLOSE);
      }
      return result;
    } catch (error) {
      if (!options.quietFailure) {
        const what = flavor || 'the default flavor';
        show(`Cannot start a kernel on ${what}: ${errorMessage(error)}`, 'error', false);
      } else if (id !== null) {
        Notification.dismiss(id);
      }
      throw error;
    } finally {
      pending = false;
      this._starts.splice(this._starts.indexOf(progress), 1);
      this._changed.emit();
    }
  }

  /** The ids `progress`'s kernel is not among: those there before it, and other starts'. */
  private _claimed(progress: IStartProgress): Set<string> {
    const ids = new Set(progress.request.known);
    for (const other of this._starts) {
      if (other !== progress && other.kernel !== null) {
        ids.add(other.kernel.id);
      }
    }
    return ids;
  }

  private _settings: ServerConnection.ISettings;
  private _starts: IStartProgress[] = [];
  private _changed = new Signal<this, void>(this);
}
