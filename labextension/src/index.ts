import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { listFlavors, MLInfraError } from './api';
import { showFlavorsDialog } from './flavors';
import { watchNotices } from './notices';
import { CommandIDs, PALETTE_CATEGORY, PLUGIN_ID } from './tokens';

function errorMessage(error: unknown): string {
  if (error instanceof MLInfraError || error instanceof Error) {
    return error.message;
  }
  return String(error);
}

/** The jupyter-mlinfra plugin: commands to inspect ML infrastructure. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Accelerator flavors, flavor-sized kernels and queued jobs.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null
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

    if (palette) {
      palette.addItem({
        command: CommandIDs.showFlavors,
        category: PALETTE_CATEGORY
      });
    }

    console.log('jupyter-mlinfra is activated');
  }
};

export default plugin;
