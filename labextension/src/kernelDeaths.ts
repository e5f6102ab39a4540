/**
 * Why a flavor kernel died, when JupyterLab restarts it by itself. JupyterLab says only that
 * the kernel "appears to have died"; the server knows the cluster's reason (OOMKilled, the
 * pod evicted or deleted, the kernel process killed by SIGKILL) and lists it as the kernel's
 * `last_exit`, which this shows as a notification that stays until dismissed.
 */
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import { specStart } from './kernelStarts';
import { KernelsModel } from './kernelsModel';
import { IKernel } from './tokens';

/** How long the page's kernels are watched for the reason of a death (ms). */
export const EXPLAIN_PATIENCE = 10000;

/** What the notification says of a kernel that died, or null when nothing is known. */
export function deathMessage(kernel: IKernel): string | null {
  return kernel.last_exit
    ? `The kernel on ${kernel.flavor} died and is restarting: ${kernel.last_exit.reason}`
    : null;
}

/** Reasons already told, by kernel id (the time of the death told). */
const told = new Map<string, number>();

/**
 * The reason kernel `id` died, once the page's kernels list one not told before (the server
 * records it when it notices the death, and pushes that the kernels changed); null if none
 * comes within `patience` ms.
 */
export function explainDeath(
  id: string,
  kernels: KernelsModel,
  patience: number = EXPLAIN_PATIENCE
): Promise<string | null> {
  return new Promise(resolve => {
    const finish = (message: string | null): void => {
      window.clearTimeout(timer);
      kernels.changed.disconnect(look);
      resolve(message);
    };
    const look = (): void => {
      const kernel = kernels.get(id);
      if (kernel?.last_exit && told.get(id) !== kernel.last_exit.at) {
        told.set(id, kernel.last_exit.at);
        finish(deathMessage(kernel));
      }
    };
    const timer = window.setTimeout(() => finish(null), patience);
    kernels.changed.connect(look);
    look();
  });
}

/** Explain the automatic restarts of every notebook's flavor kernel. */
export function watchKernelDeaths(tracker: INotebookTracker, kernels: KernelsModel): void {
  const watch = (panel: NotebookPanel): void => {
    panel.sessionContext.statusChanged.connect((context, status) => {
      const kernel = context.session?.kernel;
      const spec = kernel && context.specsManager.specs?.kernelspecs[kernel.name];
      if (status !== 'autorestarting' || !kernel || specStart(spec) === null) {
        return;
      }
      void explainDeath(kernel.id, kernels).then(message => {
        if (message !== null) {
          Notification.warning(message, { autoClose: false });
        }
      });
    });
  };
  tracker.forEach(watch);
  tracker.widgetAdded.connect((_, panel) => watch(panel));
}
