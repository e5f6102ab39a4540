/**
 * The Kernels section of the sidebar: the user's kernels that are starting, each with the
 * phase of its start and the cluster's reason (live, as the model refreshes), then the running
 * ones with their flavor. Rows are kept by kernel id and updated in place.
 */
import { Widget } from '@lumino/widgets';

import { CLOCK_INTERVAL, nowSeconds, phaseLabel, waitingText } from './kernelStarts';
import { renderRows, span } from './rows';
import { IKernel } from './tokens';

/** Why a starting kernel waits; for a running one, why it last died and was restarted. */
export function reasonText(kernel: IKernel, now: number = nowSeconds()): string {
  if (kernel.state === 'starting') {
    return waitingText(kernel, now);
  }
  if (kernel.state === 'running' && kernel.last_exit) {
    const at = new Date(kernel.last_exit.at * 1000).toLocaleTimeString();
    return `Restarted after it died at ${at}: ${kernel.last_exit.reason}`;
  }
  return '';
}

/** One kernel, as an `<li>` updated in place. */
class KernelRow {
  constructor(kernel: IKernel) {
    this.node.className = 'jp-mlinfra-KernelRow';
    this._reason.className = 'jp-mlinfra-KernelRow-reason';
    const head = document.createElement('div');
    head.className = 'jp-mlinfra-KernelRow-head';
    head.append(this._flavor, this._phase);
    const meta = document.createElement('div');
    meta.className = 'jp-mlinfra-KernelRow-meta';
    meta.append(this._environment, this._id);
    this.node.append(head, meta, this._reason);
    this.update(kernel, nowSeconds());
  }

  readonly node = document.createElement('li');

  update(kernel: IKernel, now: number): void {
    const phase = kernel.state === 'starting' ? phaseLabel(kernel) : kernel.state;
    this.node.dataset.kernelId = kernel.id;
    this.node.dataset.state = kernel.state;
    this.node.dataset.phase = kernel.phase ?? '';
    this.node.setAttribute('aria-label', `Kernel on ${kernel.flavor}: ${phase}`);
    this._flavor.textContent = kernel.flavor;
    this._phase.textContent = phase;
    const trouble = kernel.phase === 'unschedulable' || kernel.phase === 'failed';
    this._phase.className =
      'jp-mlinfra-JobState jp-mlinfra-KernelRow-phase ' +
      `jp-mlinfra-mod-${trouble ? 'failed' : kernel.state}`;
    this._environment.textContent = kernel.environment;
    this._id.textContent = kernel.id.slice(0, 8);
    this._id.title = kernel.id;
    this._reason.textContent = reasonText(kernel, now);
    this._reason.hidden = this._reason.textContent === '';
  }

  private _flavor = span('jp-mlinfra-KernelRow-flavor');
  private _phase = span('jp-mlinfra-JobState');
  private _environment = span('jp-mlinfra-KernelRow-environment');
  private _id = span('jp-mlinfra-JobRow-id');
  private _reason = document.createElement('div');
}

/** The user's starting and running flavor kernels. */
export class KernelsSection extends Widget {
  constructor() {
    super();
    this.addClass('jp-mlinfra-KernelsSection');
    this.title.label = 'Kernels';
    this._status.className = 'jp-mlinfra-Section-status';
    this._status.textContent = 'Loading kernels…';
    this._list.className = 'jp-mlinfra-KernelList';
    this._list.setAttribute('aria-label', 'Kernels');
    this.node.append(this._status, this._list);
  }

  /** Show these kernels, in this order (`loaded`: false before the first answer). */
  render(kernels: readonly IKernel[], loaded: boolean): void {
    this._kernels = kernels;
    this._loaded = loaded;
    this._draw();
    // how long a start has waited grows between the server's changes: counted here
    const starting = kernels.some(k => k.state === 'starting');
    if (starting && this._clock === 0) {
      this._clock = window.setInterval(() => this._draw(), CLOCK_INTERVAL);
    } else if (!starting && this._clock !== 0) {
      window.clearInterval(this._clock);
      this._clock = 0;
    }
  }

  dispose(): void {
    window.clearInterval(this._clock);
    this._clock = 0;
    super.dispose();
  }

  private _draw(): void {
    const kernels = this._kernels;
    const now = nowSeconds();
    renderRows(
      this._list,
      this._rows,
      kernels,
      kernel => new KernelRow(kernel),
      (row, kernel) => row.update(kernel, now)
    );
    this._status.hidden = this._loaded && kernels.length > 0;
    this._status.textContent = this._loaded ? 'No kernels.' : 'Loading kernels…';
  }

  private _kernels: readonly IKernel[] = [];
  private _loaded = false;
  private _clock = 0;
  private _rows = new Map<string, KernelRow>();
  private _list = document.createElement('ul');
  private _status = document.createElement('p');
}
