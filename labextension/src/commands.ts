/**
 * Every action of the extension as a JupyterLab command, so the panel's buttons, the command
 * palette and keyboard shortcuts all do the same thing. Job commands take a `jobId` argument;
 * from the palette, without one, they ask which job. Failures become notifications carrying
 * the server's message.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Clipboard,
  InputDialog,
  MainAreaWidget,
  Notification,
  WidgetTracker
} from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { listFlavors, listJobs, startKernel, stopKernel, switchKernelFlavor } from './api';
import { showFlavorsDialog } from './flavors';
import { mlinfraIcon } from './icon';
import { IJobUpdates, JobLogView } from './logViewer';
import { jobChoiceLabel } from './jobText';
import { errorMessage, MLInfraModel } from './model';
import { SectionLayout } from './sectionLayout';
import { StartSection } from './startSection';
import { KernelStartProgress } from './startProgress';
import {
  ACTIVE_JOB_STATES,
  CommandIDs,
  FINISHED_JOB_STATES,
  IJob,
  JobState,
  PANEL_ID
} from './tokens';

/** What the commands act on. */
export interface ICommandContext {
  model: MLInfraModel;
  /** The Start section: its chosen flavor and environment are the defaults. */
  start: StartSection;
  /** How tall the panel's sections are. */
  sections: SectionLayout;
  notebooks: INotebookTracker | null;
  logs: WidgetTracker<MainAreaWidget<JobLogView>>;
  /** The kernel starts this page waits on: commands that start kernels report through it. */
  starts: KernelStartProgress;
}

/** Every command id, in the order the palette lists them. */
export const PALETTE_COMMANDS = [
  CommandIDs.openPanel,
  CommandIDs.refresh,
  CommandIDs.fitSections,
  CommandIDs.showFlavors,
  CommandIDs.newNotebook,
  CommandIDs.newConsole,
  CommandIDs.switchKernel,
  CommandIDs.openLogs,
  CommandIDs.cancelJob,
  CommandIDs.retryJob,
  CommandIDs.copyJobId
];

const ERROR_CLOSE = 8000;

function fail(what: string, error: unknown): void {
  Notification.error(`${what}: ${errorMessage(error)}`, { autoClose: ERROR_CLOSE });
}

/**
 * The job the command was given, or the one the user picks from their jobs in `states` (all
 * states when empty); null when they cancel the dialog or have no such job.
 */
async function chooseJob(
  args: Record<string, unknown>,
  title: string,
  states: readonly JobState[],
  model: MLInfraModel
): Promise<string | null> {
  if (typeof args.jobId === 'string' && args.jobId) {
    return args.jobId;
  }
  const user = model.user;
  const owner = user?.admin && !model.allUsers ? user.user : undefined;
  const { jobs } = await listJobs({ state: states, owner, limit: 100 });
  if (jobs.length === 0) {
    Notification.info(`${title}: you have no such job`, { autoClose: 5000 });
    return null;
  }
  const labels = new Map<string, IJob>(jobs.map(job => [jobChoiceLabel(job), job]));
  const answer = await InputDialog.getItem({
    title,
    label: 'Job',
    items: [...labels.keys()]
  });
  if (!answer.button.accept || answer.value === null) {
    return null;
  }
  return labels.get(answer.value)?.id ?? null;
}

/** The main-area document of a job's log viewer. */
export function createLogViewer(
  jobId: string,
  updates?: IJobUpdates
): MainAreaWidget<JobLogView> {
  const content = new JobLogView(jobId, undefined, undefined, updates);
  const widget = new MainAreaWidget({ content });
  widget.id = `jp-mlinfra-log-${jobId}`;
  widget.title.icon = mlinfraIcon;
  widget.title.label = `Log: ${jobId}`;
  widget.title.closable = true;
  content.title.changed.connect(() => {
    widget.title.label = content.title.label;
    widget.title.caption = content.title.caption;
  });
  return widget;
}

/** Register every command of the extension. */
export function addCommands(app: JupyterFrontEnd, context: ICommandContext): void {
  const { commands } = app;
  const { model, start, notebooks, logs } = context;

  commands.addCommand(CommandIDs.openPanel, {
    label: 'Open ML Infrastructure Panel',
    caption: 'Show the flavors and jobs in the left sidebar',
    icon: args => (args.isPalette ? undefined : mlinfraIcon),
    execute: () => app.shell.activateById(PANEL_ID)
  });

  commands.addCommand(CommandIDs.refresh, {
    label: 'Refresh ML Infrastructure',
    caption: 'Fetch the flavors and jobs again now',
    execute: () => model.refresh().catch(error => fail('Cannot refresh ML Infrastructure', error))
  });

  commands.addCommand(CommandIDs.fitSections, {
    label: 'Fit Panel Sections to Their Content',
    caption:
      'Size the sections of the ML Infrastructure panel to what they hold again, ' +
      'instead of the sizes they were dragged to',
    execute: () => context.sections.reset()
  });

  commands.addCommand(CommandIDs.showFlavors, {
    label: 'Show Accelerator Flavors',
    caption: 'List the accelerator flavors this server offers',
    execute: async () => {
      try {
        await showFlavorsDialog(await listFlavors());
      } catch (error) {
        fail('Cannot list accelerator flavors', error);
      }
    }
  });

  /** Start a kernel on the flavor and environment, then open `what` on it. */
  const startOn = async (
    args: Record<string, unknown>,
    open: (kernel: { id: string; name: string }) => Promise<unknown>
  ): Promise<void> => {
    const flavor = (args.flavor as string) || start.flavor;
    const environment = (args.environment as string) || start.environment;
    let kernel: { id: string; name: string };
    try {
      // its progress, and its failure with the server's reason, show in a notification
      kernel = await context.starts.startKernel(
        flavor,
        environment,
        () => startKernel({ flavor, environment }),
        id => stopKernel(id)
      );
    } catch {
      return;
    } finally {
      void model.refresh().catch(() => undefined);
    }
    try {
      await open(kernel);
    } catch (error) {
      fail(`Cannot open the kernel started on ${flavor}`, error);
    }
  };

  commands.addCommand(CommandIDs.newNotebook, {
    label: args =>
      args.flavor
        ? `New Notebook on Flavor ${args.flavor as string}`
        : 'New Notebook on the Chosen Flavor',
    caption: 'Start a kernel on a flavor and environment, and open a new notebook on it',
    execute: args =>
      startOn(args, kernel =>
        commands.execute('notebook:create-new', { kernelId: kernel.id, kernelName: kernel.name })
      )
  });

  commands.addCommand(CommandIDs.newConsole, {
    label: args =>
      args.flavor
        ? `New Console on Flavor ${args.flavor as string}`
        : 'New Console on the Chosen Flavor',
    caption: 'Start a kernel on a flavor and environment, and open a console on it',
    execute: args =>
      startOn(args, kernel =>
        commands.execute('console:create', {
          kernelPreference: { id: kernel.id, name: kernel.name }
        })
      )
  });

  commands.addCommand(CommandIDs.switchKernel, {
    label: args =>
      args.flavor
        ? `Switch This Notebook's Kernel to Flavor ${args.flavor as string}`
        : "Switch This Notebook's Kernel to the Chosen Flavor",
    caption: "Restart the current notebook's kernel on another flavor",
    isEnabled: () => !!notebooks?.currentWidget,
    execute: async args => {
      const flavor = (args.flavor as string) || start.flavor;
      const current = notebooks?.currentWidget ?? null;
      const id = current?.sessionContext.session?.kernel?.id;
      try {
        if (!current || !id) {
          throw new Error('open a notebook with a running kernel first');
        }
        const kernels = model.allKernels;
        if (!kernels.loaded) {
          await kernels.refresh(); // the page has just opened
        }
        const ours = kernels.get(id)?.state === 'running';
        if (!ours) {
          throw new Error('this notebook does not run on an ML Infrastructure kernel');
        }
        // a pod kernel moves to a new pod, which may wait for a node and pull an image: its
        // progress shows as a start's would
        await context.starts.track(flavor, '', () => switchKernelFlavor(id, flavor), {
          kernelId: id,
          quietFailure: true
        });
        Notification.success(`The kernel of ${current.title.label} now runs on ${flavor}`, {
          autoClose: 5000
        });
        void model.refresh().catch(() => undefined);
      } catch (error) {
        fail(`Cannot switch the kernel to ${flavor}`, error);
      }
    }
  });

  /** A command on one job: `act` gets the job id (asked for when not given). */
  const jobCommand = (
    id: string,
    label: string,
    caption: string,
    states: readonly JobState[],
    act: (jobId: string) => Promise<unknown>
  ): void => {
    commands.addCommand(id, {
      label: args => (args.jobId ? `${label} ${args.jobId as string}` : `${label}…`),
      caption,
      execute: async args => {
        let jobId: string | null = null;
        try {
          jobId = await chooseJob(args, `${label}…`, states, model);
          if (jobId !== null) {
            await act(jobId);
          }
        } catch (error) {
          fail(`${label} ${jobId ?? ''}`.trim() + ' failed', error);
        }
      }
    });
  };

  jobCommand(
    CommandIDs.openLogs,
    'Open Logs of Job',
    "Follow a job's log in the main area, for all ranks or one",
    [],
    async jobId => {
      const open = logs.find(widget => widget.content.jobId === jobId);
      if (open) {
        app.shell.activateById(open.id);
        return;
      }
      const widget = createLogViewer(jobId, model);
      void logs.add(widget);
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
    }
  );
  jobCommand(
    CommandIDs.cancelJob,
    'Cancel Job',
    'Cancel a queued or running job',
    ACTIVE_JOB_STATES,
    jobId => model.cancel(jobId)
  );
  jobCommand(
    CommandIDs.retryJob,
    'Retry Job',
    'Queue a finished job again, as its next attempt',
    FINISHED_JOB_STATES,
    async jobId => {
      const job = await model.retry(jobId);
      Notification.success(`Job ${job.name || job.id} is queued again (attempt ${job.attempt})`, {
        autoClose: 5000
      });
    }
  );
  jobCommand(
    CommandIDs.copyJobId,
    'Copy Id of Job',
    "Copy a job's id to the clipboard",
    [],
    async jobId => {
      Clipboard.copyToSystem(jobId);
      Notification.success(`Copied job id ${jobId} to the clipboard`, { autoClose: 4000 });
    }
  );
}
