/**
 * Starts this page waits on, shown while they last (a pod may first wait for a node and pull
 * an image for minutes): each is followed in the page's kernels (`KernelsModel`, which the
 * server's pushes keep current) and told in a notification that updates in place while it
 * waits (its outcome in a fresh one), and to listeners (the status bar) too. A start from the
 * sidebar knows its kernel's id from the first moment (`POST kernels` answers 202 with it) and
 * is followed by that id; only a notebook's own start (`POST /api/sessions`, which answers once
 * the kernel is ready) is found among the listed starts by its flavor and environment.
 */
import { Notification } from '@jupyterlab/apputils';
import { ISignal, Signal } from '@lumino/signaling';

import { CLOCK_INTERVAL, findStart, IStartRequest, progressMessage } from './kernelStarts';
import { KernelsModel } from './kernelsModel';
import { errorMessage } from './model';
import { IKernel } from './tokens';

/** How long the "ready" notification stays (ms). */
export const READY_CLOSE = 3000;

/** One start under way: what was asked for and, once listed, its kernel. */
export interface IStartProgress {
  readonly request: IStartRequest;
  /** The starting kernel as last listed, or null before the server lists it. */
  readonly kernel: IKernel | null;
}

/** A start the user gave up (its notification's Cancel). */
export class StartCancelled extends Error {
  constructor() {
    super('the start was cancelled');
    this.name = 'StartCancelled';
  }
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
  /** `kernels`: the page's kernels, where a start shows once the server lists it. */
  constructor(kernels: KernelsModel) {
    this._kernels = kernels;
  }

  /**
   * Emitted when a start begins, moves to another phase or reason, or ends, and every
   * `CLOCK_INTERVAL` while one waits (how long it has waited grows).
   */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The most recent start still under way, or null. */
  get current(): IStartProgress | null {
    return this._starts.length > 0 ? this._starts[this._starts.length - 1] : null;
  }

  /**
   * Start a kernel of `environment` on `flavor` with `start` (`POST kernels`, which answers
   * at once with the kernel starting) and follow it by its id until it runs, showing its
   * progress, with a Cancel that calls `stop` (`DELETE kernels/{id}`, which gives the start
   * up); answers the running kernel, or rejects with the start's error (`StartCancelled`
   * once cancelled).
   */
  startKernel(
    flavor: string,
    environment: string,
    start: () => Promise<IKernel>,
    stop: (kernelId: string) => Promise<unknown>
  ): Promise<IKernel> {
    return this.track(flavor, environment, async identify => {
      const kernel = await start();
      let cancelled = false;
      identify(kernel.id, async () => {
        cancelled = true;
        await stop(kernel.id);
      });
      try {
        return await this._kernels.settled(kernel.id);
      } catch (error) {
        throw cancelled ? new StartCancelled() : error;
      }
    });
  }

  /**
   * Run `start` (what starts a kernel of `environment` on `flavor` and settles once it is
   * ready; it calls `identify` with the kernel's id once it knows it, and how to cancel the
   * start if it can be), showing its progress until it settles; answers or rethrows its
   * result. Until identified (or given `options.kernelId`), the start is found among the
   * listed ones by flavor and environment. The notification, shown once the server lists the
   * start, offers Cancel where it can be, and ends as "ready" (closing by itself); a failure
   * shows the server's error (or, with `quietFailure`, closes it).
   */
  async track<T>(
    flavor: string,
    environment: string,
    start: (identify: (kernelId: string, cancel?: () => Promise<void>) => void) => Promise<T>,
    options: ITrackOptions = {}
  ): Promise<T> {
    // kernels already starting stay candidates: a notebook's own start is under way by the time
    // it is followed, so the server may list it already
    const known = new Set(
      this._kernels.kernels.filter(k => k.state !== 'starting').map(k => k.id)
    );
    const progress: { request: IStartRequest; kernel: IKernel | null } = {
      request: { flavor, environment, known, kernelId: options.kernelId },
      kernel: null
    };
    // no notification until the server lists the start as under way: a kernel that is ready
    // within a second (the local backend) needs none
    let id: string | null = null;
    let cancel: (() => Promise<void>) | null = null;
    let cancelling = false;
    const show = (
      message: string,
      type: Notification.TypeOptions,
      autoClose: number | false,
      actions: Notification.IAction[] = []
    ): void => {
      if (id === null) {
        id = Notification.emit(message, type, { autoClose, actions });
      } else {
        Notification.update({ id, message, type, autoClose, actions });
      }
    };
    // how the start ended, in a notification of its own: JupyterLab creates a toast
    // asynchronously, and an update that follows the first toast of a page too closely is lost
    // (the toast is not active yet), which would leave "Starting…" showing for good
    const end = (message: string, type: Notification.TypeOptions, autoClose: number | false) => {
      if (id !== null) {
        Notification.dismiss(id);
      }
      id = Notification.emit(message, type, { autoClose });
    };
    const cancelAction = (): Notification.IAction[] => {
      const stop = cancel;
      if (stop === null) {
        return [];
      }
      const callback = (event: MouseEvent): void => {
        event.preventDefault(); // the notification stays, to say how the cancel went
        cancelling = true;
        const what = flavor || 'the default flavor';
        show(`Cancelling the kernel start on ${what}…`, 'in-progress', false);
        stop().catch(error => {
          cancelling = false;
          show(`Cannot cancel the kernel start: ${errorMessage(error)}`, 'error', false);
        });
      };
      const caption = 'Give this kernel start up';
      return [{ label: 'Cancel', caption, displayType: 'warn', callback }];
    };
    const tell = (): void => {
      if (!cancelling && progress.kernel?.state === 'starting') {
        show(progressMessage(flavor, progress.kernel), 'in-progress', false, cancelAction());
      }
      this._changed.emit();
    };
    // once found, a start keeps its kernel; the claim is made without a pause in between
    const look = (): void => {
      const found = progress.kernel;
      const kernels = this._kernels.kernels;
      const kernel =
        found === null
          ? findStart(kernels, { ...progress.request, known: this._claimed(progress) })
          : (kernels.find(k => k.id === found.id) ?? null);
      if (kernel !== null && JSON.stringify(kernel) !== JSON.stringify(found)) {
        progress.kernel = kernel;
        tell();
      }
    };
    const tick = (): void => {
      const kernel = progress.kernel;
      if (kernel?.state === 'starting' && kernel.since !== null) {
        tell(); // how long it has waited grows
      }
    };
    this._kernels.changed.connect(look);
    const clock = window.setInterval(tick, CLOCK_INTERVAL);
    this._starts.push(progress);
    this._changed.emit();
    look();
    const identify = (kernelId: string, canceller?: () => Promise<void>): void => {
      progress.request.kernelId = kernelId;
      cancel = canceller ?? null;
      look();
    };
    try {
      const result = await start(identify);
      if (id !== null) {
        const where = progress.kernel?.flavor || flavor || 'the default flavor';
        end(`Kernel ready on ${where}`, 'success', READY_CLOSE);
      }
      return result;
    } catch (error) {
      if (error instanceof StartCancelled) {
        end(`Kernel start on ${flavor || 'the default flavor'} cancelled`, 'info', READY_CLOSE);
      } else if (!options.quietFailure) {
        const what = flavor || 'the default flavor';
        end(`Cannot start a kernel on ${what}: ${errorMessage(error)}`, 'error', false);
      } else if (id !== null) {
        Notification.dismiss(id);
      }
      throw error;
    } finally {
      this._kernels.changed.disconnect(look);
      window.clearInterval(clock);
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

  private _kernels: KernelsModel;
  private _starts: IStartProgress[] = [];
  private _changed = new Signal<this, void>(this);
}
