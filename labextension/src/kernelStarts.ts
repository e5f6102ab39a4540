/**
 * What a kernel's start looks like to a person while a cluster gets it ready: pure functions
 * over `GET kernels` answers, shared by the sidebar, the status bar and the notification; how
 * long a start has waited is counted here from the kernel's `since`.
 */
import { KernelSpec } from '@jupyterlab/services';

import { IKernel, IKernelSpecStart, KernelPhase } from './tokens';

/** A few words for each phase of a pod kernel's start. */
export const PHASE_LABELS: Record<KernelPhase, string> = {
  scheduling: 'waiting for a node',
  unschedulable: 'unschedulable',
  'scaling-up': 'adding a node',
  pulling: 'pulling image',
  preparing: 'preparing',
  starting: 'starting kernel',
  ready: 'ready',
  failed: 'failed'
};

/** A kernel's phase in words: `pulling image`, or its state for one without a phase. */
export function phaseLabel(kernel: IKernel): string {
  return kernel.phase ? PHASE_LABELS[kernel.phase] : kernel.state;
}

/** How often the time a start has waited is shown anew (ms): it grows with no change pushed. */
export const CLOCK_INTERVAL = 1000;

/** Now, in the server's unit: epoch seconds. */
export function nowSeconds(): number {
  return Date.now() / 1000;
}

/** How long a starting kernel has been in its phase, `12 s`; null for any other or unknown. */
export function elapsedText(kernel: IKernel, now: number = nowSeconds()): string | null {
  if (kernel.state !== 'starting' || kernel.since === null) {
    return null;
  }
  return `${Math.max(0, Math.round(now - kernel.since))} s`;
}

/** Why a starting kernel waits and for how long: `Pulling image "pytorch/..." (12 s)`. */
export function waitingText(kernel: IKernel, now: number = nowSeconds()): string {
  const elapsed = elapsedText(kernel, now);
  return kernel.reason && elapsed ? `${kernel.reason} (${elapsed})` : kernel.reason;
}

/** `pulling image: Pulling image "pytorch/..." (12 s)`; the phase alone without a reason. */
export function startingText(kernel: IKernel, now: number = nowSeconds()): string {
  const label = phaseLabel(kernel);
  return kernel.reason ? `${label}: ${waitingText(kernel, now)}` : label;
}

/** The kernels the sidebar lists: `user`'s starting and running ones, starting ones first. */
export function activeKernels(kernels: readonly IKernel[], user: string): IKernel[] {
  const mine = kernels.filter(
    k => k.owner === user && (k.state === 'starting' || k.state === 'running')
  );
  return [
    ...mine.filter(k => k.state === 'starting'),
    ...mine.filter(k => k.state === 'running')
  ];
}

/** A start this page waits on. */
export interface IStartRequest {
  /** The flavor asked for ('' for the server's default). */
  flavor: string;
  /** The environment asked for ('' for the server's default). */
  environment: string;
  /** Kernel ids the new one is not among (those listed, not starting, before the start). */
  known: ReadonlySet<string>;
  /** The kernel, once its id is known: the start's own (202), or a kernel moved to another
   * flavor (same id). */
  kernelId?: string;
}

/**
 * The kernel that stands for `request` in a listing: the newest starting kernel not in
 * `known` (or the kernel moved, by its id), of the flavor and environment asked for; null
 * before the server lists it.
 */
export function findStart(kernels: readonly IKernel[], request: IStartRequest): IKernel | null {
  const matches = (asked: string, value: string): boolean => asked === '' || asked === value;
  const candidates = kernels.filter(
    k =>
      k.state === 'starting' &&
      (request.kernelId === undefined ? !request.known.has(k.id) : k.id === request.kernelId) &&
      matches(request.flavor, k.flavor) &&
      matches(request.environment, k.environment)
  );
  return candidates.reduce<IKernel | null>(
    (newest, k) => (newest === null || k.started > newest.started ? k : newest),
    null
  );
}

/** What the notification says while `flavor`'s kernel starts (`kernel`: null until listed). */
export function progressMessage(
  flavor: string,
  kernel: IKernel | null,
  now: number = nowSeconds()
): string {
  const what = `Starting a kernel on ${flavor || kernel?.flavor || 'the default flavor'}`;
  return kernel === null ? `${what}…` : `${what} — ${startingText(kernel, now)}`;
}

/** What the status bar says while a kernel starts: `a100x1 · pulling image (12 s)`. */
export function progressStatusText(
  flavor: string,
  kernel: IKernel | null,
  now: number = nowSeconds()
): string {
  const name = kernel?.flavor || flavor || 'kernel';
  if (kernel === null) {
    return `${name} · starting…`;
  }
  const elapsed = elapsedText(kernel, now);
  return `${name} · ${phaseLabel(kernel)}${elapsed ? ` (${elapsed})` : ''}`;
}

/**
 * What a kernelspec the server generates starts (its `metadata.mlinfra`); null for any other
 * kernelspec, or one not known (yet).
 */
export function specStart(spec: KernelSpec.ISpecModel | null | undefined): IKernelSpecStart | null {
  const start = spec?.metadata?.mlinfra as Partial<IKernelSpecStart> | undefined;
  return typeof start?.environment === 'string' && typeof start.flavor === 'string'
    ? (start as IKernelSpecStart)
    : null;
}
