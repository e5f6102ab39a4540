/**
 * The jupyter-mlinfra plugin: the sidebar panel, its commands, the job log viewers and the
 * status-bar item.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  Notification,
  WidgetTracker
} from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStateDB } from '@jupyterlab/statedb';
import { IStatusBar } from '@jupyterlab/statusbar';

import { addCommands, PALETTE_COMMANDS } from './commands';
import { watchKernelDeaths } from './kernelDeaths';
import { JobLogView } from './logViewer';
import { MLInfraModel } from './model';
import { watchNotices } from './notices';
import { MLInfraPanel } from './panel';
import { watchSessionStarts } from './sessionStarts';
import { KernelStartProgress } from './startProgress';
import { KernelFlavorStatus } from './statusItem';
import { CommandIDs, PALETTE_CATEGORY, PANEL_ID, PLUGIN_ID } from './tokens';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Accelerator flavors, flavor-sized kernels and queued jobs.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer, IStatusBar, IStateDB],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    state: IStateDB | null
  ) => {
    const model = new MLInfraModel();
    model.failed.connect((_, message) => {
      Notification.error(`ML Infrastructure: ${message}`, { autoClose: 8000 });
    });
    const kernels = model.allKernels;
    const starts = new KernelStartProgress(kernels);
    if (notebooks && statusBar) {
      const item = new KernelFlavorStatus(notebooks, starts, kernels);
      statusBar.registerStatusItem(`${PLUGIN_ID}:kernel-flavor`, {
        item,
        align: 'left',
        rank: 5,
        isActive: () => item.active,
        activeStateChanged: item.stateChanged
      });
    }
    if (notebooks) {
      watchNotices(notebooks);
      watchKernelDeaths(notebooks, kernels);
    }
    watchSessionStarts(app, starts);

    const panel = new MLInfraPanel(model, app.commands);
    app.shell.add(panel, 'left', { rank: 600 });
    if (state) {
      // after the shell restored its layout, which holds the sizes of the last session too
      void app.restored.then(() => panel.sections.restore(state));
    }

    const logs = new WidgetTracker<MainAreaWidget<JobLogView>>({
      namespace: 'mlinfra-job-logs'
    });
    addCommands(app, {
      model,
      start: panel.start,
      sections: panel.sections,
      notebooks,
      logs,
      starts
    });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
      void restorer.restore(logs, {
        command: CommandIDs.openLogs,
        args: widget => ({ jobId: widget.content.jobId }),
        name: widget => widget.content.jobId
      });
    }
    if (palette) {
      for (const command of PALETTE_COMMANDS) {
        palette.addItem({ command, category: PALETTE_CATEGORY });
      }
    }

    console.log('jupyter-mlinfra is activated');
  }
};

export default plugin;
