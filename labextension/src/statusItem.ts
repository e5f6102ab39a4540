/**
 * A status-bar item: the flavor and accelerators of the current notebook's kernel, and while
 * a kernel this page asked for starts, where its start is (`a100x1 · pulling image (12 s)`).
 */
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { listKernels } from './api';
import { progressStatusText, startingText } from './kernelStarts';
import { KernelStartProgress } from './startProgress';
import { IKernel } from './tokens';

/** `h100x2 · GPUs 0,1`; only the flavor for a kernel that holds no accelerator. */
export function kernelStatusText(kernel: IKernel): string {
  if (kernel.devices.length === 0) {
    return kernel.flavor;
  }
  const noun = kernel.devices.length === 1 ? 'GPU' : 'GPUs';
  return `${kernel.flavor} · ${noun} ${kernel.devices.join(',')}`;
}

/**
 * Shows a kernel start under way, else the current notebook's mlinfra kernel; inactive when
 * there is neither.
 */
export class KernelFlavorStatus extends Widget {
  constructor(tracker: INotebookTracker, starts: KernelStartProgress) {
    super();
    this.addClass('jp-mlinfra-KernelStatus');
    this._tracker = tracker;
    this._starts = starts;
    tracker.currentChanged.connect(this._onCurrentChanged, this);
    starts.changed.connect(this._render, this);
    this._onCurrentChanged();
  }

  /** The mlinfra kernel of the current notebook, or null. */
  get kernel(): IKernel | null {
    return this._kernel;
  }

  /** Whether the item has something to show. */
  get active(): boolean {
    return this._kernel !== null || this._starts.current !== null;
  }

  /** Emitted when the item starts or stops having something to show. */
  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }

  /** Look the current notebook's kernel up again. */
  async refresh(): Promise<void> {
    const ticket = ++this._ticket;
    const panel = this._tracker.currentWidget;
    const id = panel?.sessionContext.session?.kernel?.id ?? null;
    let kernel: IKernel | null = null;
    if (id !== null) {
      try {
        const list = await listKernels();
        kernel = list.kernels.find(k => k.id === id && k.state === 'running') ?? null;
      } catch {
        kernel = null; // the panel reports server errors; the status bar stays quiet
      }
    }
    if (ticket !== this._ticket) {
      return; // a newer refresh is under way
    }
    this._show(kernel);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    Signal.clearData(this);
    super.dispose();
  }

  private _show(kernel: IKernel | null): void {
    this._kernel = kernel;
    this._render();
  }

  private _render(): void {
    const had = this._wasActive;
    const kernel = this._kernel;
    const start = this._starts.current;
    this.toggleClass('jp-mod-starting', start !== null);
    if (start !== null) {
      this.node.textContent = progressStatusText(start.request.flavor, start.kernel);
      this.node.title = start.kernel
        ? `Starting a kernel on ${start.kernel.flavor}: ${startingText(start.kernel)}`
        : 'Starting a kernel';
    } else if (kernel === null) {
      this.node.textContent = '';
      this.node.title = '';
    } else {
      this.node.textContent = kernelStatusText(kernel);
      this.node.title =
        `ML Infrastructure kernel on flavor ${kernel.flavor}` +
        (kernel.devices.length > 0
          ? `, accelerators ${kernel.devices.join(', ')}`
          : ', no accelerators') +
        ` (environment ${kernel.environment})`;
    }
    this._wasActive = this.active;
    if (had !== this._wasActive) {
      this._stateChanged.emit();
    }
  }

  private _onCurrentChanged(): void {
    const panel = this._tracker.currentWidget;
    if (this._watched !== panel) {
      if (this._watched) {
        this._watched.sessionContext.kernelChanged.disconnect(this._onKernel, this);
        this._watched.sessionContext.statusChanged.disconnect(this._onStatus, this);
      }
      this._watched = panel;
      if (panel) {
        panel.sessionContext.kernelChanged.connect(this._onKernel, this);
        panel.sessionContext.statusChanged.connect(this._onStatus, this);
      }
    }
    void this.refresh();
  }

  private _onKernel(): void {
    void this.refresh();
  }

  private _onStatus(_: unknown, status: string): void {
    // a flavor switch restarts the kernel under the same id: look again once it is back
    if (status === 'idle' && this._lastStatus !== 'idle' && this._lastStatus !== 'busy') {
      void this.refresh();
    }
    this._lastStatus = status;
  }

  private _tracker: INotebookTracker;
  private _starts: KernelStartProgress;
  private _wasActive = false;
  private _watched: NotebookPanel | null = null;
  private _kernel: IKernel | null = null;
  private _ticket = 0;
  private _lastStatus = '';
  private _stateChanged = new Signal<this, void>(this);
}
