/**
 * Why a flavor kernel died, when JupyterLab restarts it by itself. JupyterLab says only that
 * the kernel "appears to have died"; the server knows the cluster's reason (OOMKilled, the
 * pod evicted or deleted, the kernel process killed by SIGKILL) and lists it as the kernel's
 * `last_exit`, which this shows as a notification that stays until dismissed.
 */
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';

import { listKernels } from './api';
import { specStart } from './kernelStarts';
import { IKernel } from './tokens';

/** How often, and how many times, the server is asked for the reason after a death (ms). */
export const EXPLAIN_INTERVAL = 500;
export const EXPLAIN_TRIES = 20;

/** What the notification says of a kernel that died, or null when nothing is known. */
export function deathMessage(kernel: IKernel): string | null {
  return kernel.last_exit
    ? `The kernel on ${kernel.flavor} died and is restarting: ${kernel.last_exit.reason}`
    : null;
}

/** Reasons already told, by kernel id (the time of the death told). */
const told = new Map<string, number>();

/**
 * The reason kernel `id` died, once the server lists one not told before (it is recorded
 * when the server notices the death, before the restart begins); null if none comes.
 */
export async function explainDeath(
  id: string,
  settings?: ServerConnection.ISettings
): Promise<string | null> {
  for (let attempt = 0; attempt < EXPLAIN_TRIES; attempt++) {
    try {
      const kernel = (await listKernels(settings)).kernels.find(k => k.id === id);
      if (kernel?.last_exit && told.get(id) !== kernel.last_exit.at) {
        told.set(id, kernel.last_exit.at);
        return deathMessage(kernel);
      }
    } catch {
      // the server restarts too, or the network hiccups: ask again
    }
    await new Promise(resolve => setTimeout(resolve, EXPLAIN_INTERVAL));
  }
  return null;
}

/** Explain the automatic restarts of every notebook's flavor kernel. */
export function watchKernelDeaths(tracker: INotebookTracker): void {
  const watch = (panel: NotebookPanel): void => {
    panel.sessionContext.statusChanged.connect((context, status) => {
      const kernel = context.session?.kernel;
      const spec = kernel && context.specsManager.specs?.kernelspecs[kernel.name];
      if (status !== 'autorestarting' || !kernel || specStart(spec) === null) {
        return;
      }
      void explainDeath(kernel.id).then(message => {
        if (message !== null) {
          Notification.warning(message, { autoClose: false });
        }
      });
    });
  };
  tracker.forEach(watch);
  tracker.widgetAdded.connect((_, panel) => watch(panel));
}
