import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { listFlavors } from './api';
import { showFlavorsDialog } from './flavors';
import { mlinfraIcon } from './icon';
import { errorMessage, MLInfraModel } from './model';
import { watchNotices } from './notices';
import { MLInfraPanel } from './panel';
import { CommandIDs, PALETTE_CATEGORY, PANEL_ID, PLUGIN_ID } from './tokens';

/** The jupyter-mlinfra plugin: commands to inspect ML infrastructure. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Accelerator flavors, flavor-sized kernels and queued jobs.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ) => {
    if (notebooks) {
      watchNotices(notebooks);
    }
    app.commands.addCommand(CommandIDs.showFlavors, {
      label: 'Show Accelerator Flavors',
      caption: 'List the accelerator flavors this server offers',
      execute: async () => {
        try {
          await showFlavorsDialog(await listFlavors());
        } catch (error) {
          Notification.error(
            `Cannot list accelerator flavors: ${errorMessage(error)}`,
            { autoClose: 8000 }
          );
        }
      }
    });

    const model = new MLInfraModel();
    model.failed.connect((_, message) => {
      Notification.error(`ML Infrastructure: ${message}`, { autoClose: 8000 });
    });
    const panel = new MLInfraPanel(model);
    app.shell.add(panel, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Open ML Infrastructure Panel',
      caption: 'Show the flavors and jobs in the left sidebar',
      icon: args => (args.isPalette ? undefined : mlinfraIcon),
      execute: () => {
        app.shell.activateById(PANEL_ID);
      }
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh ML Infrastructure',
      caption: 'Fetch the flavors and jobs again now',
      execute: async () => {
        try {
          await model.refresh();
        } catch (error) {
          Notification.error(
            `Cannot refresh ML Infrastructure: ${errorMessage(error)}`,
            { autoClose: 8000 }
          );
        }
      }
    });

    if (palette) {
      for (const command of [
        CommandIDs.showFlavors,
        CommandIDs.openPanel,
        CommandIDs.refresh
      ]) {
        palette.addItem({ command, category: PALETTE_CATEGORY });
      }
    }

    console.log('jupyter-mlinfra is activated');
  }
};

export default plugin;
