/**
 * A status-bar item: the flavor and accelerators of the current notebook's kernel, and while
 * a kernel this page asked for starts, where its start is (`a100x1 · pulling image (12 s)`).
 * It reads the page's kernels (`KernelsModel`) and shows them anew when they change.
 */
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { progressStatusText, startingText } from './kernelStarts';
import { KernelsModel } from './kernelsModel';
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
  constructor(tracker: INotebookTracker, starts: KernelStartProgress, kernels: KernelsModel) {
    super();
    this.addClass('jp-mlinfra-KernelStatus');
    this._tracker = tracker;
    this._starts = starts;
    this._kernels = kernels;
    tracker.currentChanged.connect(this._onCurrentChanged, this);
    starts.changed.connect(this._render, this);
    kernels.changed.connect(this._update, this);
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

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    Signal.clearData(this);
    super.dispose();
  }

  /** Look the current notebook's kernel up in the page's kernels. */
  private _update(): void {
    const id = this._tracker.currentWidget?.sessionContext.session?.kernel?.id ?? null;
    const kernel = id === null ? null : this._kernels.get(id);
    this._kernel = kernel?.state === 'running' ? kernel : null;
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
        this._watched.sessionContext.kernelChanged.disconnect(this._update, this);
      }
      this._watched = panel;
      if (panel) {
        panel.sessionContext.kernelChanged.connect(this._update, this);
      }
    }
    this._update();
  }

  private _tracker: INotebookTracker;
  private _starts: KernelStartProgress;
  private _kernels: KernelsModel;
  private _wasActive = false;
  private _watched: NotebookPanel | null = null;
  private _kernel: IKernel | null = null;
  private _stateChanged = new Signal<this, void>(this);
}
