import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';

import { listFlavors, listKernels, startKernel, switchKernelFlavor } from './api';
import { showFlavorsDialog } from './flavors';
import { mlinfraIcon } from './icon';
import { errorMessage, MLInfraModel } from './model';
import { watchNotices } from './notices';
import { MLInfraPanel } from './panel';
import { KernelFlavorStatus } from './statusItem';
import { CommandIDs, PALETTE_CATEGORY, PANEL_ID, PLUGIN_ID } from './tokens';

/** The jupyter-mlinfra plugin: commands to inspect ML infrastructure. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Accelerator flavors, flavor-sized kernels and queued jobs.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null
  ) => {
    let status: KernelFlavorStatus | null = null;
    if (notebooks && statusBar) {
      status = new KernelFlavorStatus(notebooks);
      const item = status;
      statusBar.registerStatusItem(`${PLUGIN_ID}:kernel-flavor`, {
        item,
        align: 'left',
        rank: 5,
        isActive: () => item.kernel !== null,
        activeStateChanged: item.stateChanged
      });
    }

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
    const panel: MLInfraPanel = new MLInfraPanel(model, {
      newNotebook: (flavor, environment) =>
        app.commands.execute(CommandIDs.newNotebook, { flavor, environment }),
      switchKernel: flavor => app.commands.execute(CommandIDs.switchKernel, { flavor })
    });
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

    app.commands.addCommand(CommandIDs.newNotebook, {
      label: args =>
        args.flavor
          ? `New Notebook on Flavor ${args.flavor as string}`
          : 'New Notebook on the Chosen Flavor',
      caption: 'Start a kernel on a flavor and environment, and open a new notebook on it',
      execute: async args => {
        const flavor = (args.flavor as string) || panel.start.flavor;
        const environment = (args.environment as string) || panel.start.environment;
        try {
          const kernel = await startKernel({ flavor, environment });
          await app.commands.execute('notebook:create-new', {
            kernelId: kernel.id,
            kernelName: kernel.name
          });
          void model.refresh().catch(() => undefined);
        } catch (error) {
          Notification.error(
            `Cannot start a kernel on ${flavor}: ${errorMessage(error)}`,
            { autoClose: 8000 }
          );
        }
      }
    });
    app.commands.addCommand(CommandIDs.switchKernel, {
      label: args =>
        args.flavor
          ? `Switch This Notebook's Kernel to Flavor ${args.flavor as string}`
          : "Switch This Notebook's Kernel to the Chosen Flavor",
      caption: "Restart the current notebook's kernel on another flavor",
      isEnabled: () => !!notebooks?.currentWidget,
      execute: async args => {
        const flavor = (args.flavor as string) || panel.start.flavor;
        const current = notebooks?.currentWidget ?? null;
        const id = current?.sessionContext.session?.kernel?.id;
        try {
          if (!current || !id) {
            throw new Error('open a notebook with a running kernel first');
          }
          const ours = (await listKernels()).kernels.some(
            k => k.id === id && k.state === 'running'
          );
          if (!ours) {
            throw new Error(
              'this notebook does not run on an ML Infrastructure kernel'
            );
          }
          await switchKernelFlavor(id, flavor);
          Notification.success(`The kernel of ${current.title.label} now runs on ${flavor}`, {
            autoClose: 5000
          });
          void status?.refresh();
          void model.refresh().catch(() => undefined);
        } catch (error) {
          Notification.error(
            `Cannot switch the kernel to ${flavor}: ${errorMessage(error)}`,
            { autoClose: 8000 }
          );
        }
      }
    });

    if (palette) {
      for (const command of [
        CommandIDs.showFlavors,
        CommandIDs.openPanel,
        CommandIDs.refresh,
        CommandIDs.newNotebook,
        CommandIDs.switchKernel
      ]) {
        palette.addItem({ command, category: PALETTE_CATEGORY });
      }
    }

    console.log('jupyter-mlinfra is activated');
  }
};

export default plugin;
