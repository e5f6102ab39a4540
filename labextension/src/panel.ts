/**
 * The "ML Infrastructure" sidebar panel: Flavors, Start, Kernels, Jobs and Queue timeline
 * sections over one model. Every button runs a command, so the panel and the palette act alike.
 * The sections are as tall as what they hold (`SectionLayout`), or as a person dragged them.
 */
import { SidePanel } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { AccordionPanel, Widget } from '@lumino/widgets';

import { FlavorsSection } from './flavorCards';
import { mlinfraIcon } from './icon';
import { JobsSection } from './jobList';
import { KernelsSection } from './kernelList';
import { MLInfraModel } from './model';
import { SectionLayout } from './sectionLayout';
import { StartSection } from './startSection';
import { TimelineSection } from './timeline';
import { CommandIDs, PANEL_ID } from './tokens';

/** The sidebar panel; it refreshes its model while it is visible. */
export class MLInfraPanel extends SidePanel {
  constructor(model: MLInfraModel, commands: CommandRegistry) {
    super();
    this.id = PANEL_ID;
    this.addClass('jp-mlinfra-Panel');
    this.title.icon = mlinfraIcon;
    this.title.caption = 'ML Infrastructure';

    const heading = new Widget({ node: document.createElement('h2') });
    heading.addClass('jp-mlinfra-Panel-title');
    heading.node.textContent = 'ML Infrastructure';
    this.header.addWidget(heading);
    this._error.addClass('jp-mlinfra-Panel-error');
    this._error.node.setAttribute('role', 'status');
    this._error.hide();
    this.header.addWidget(this._error);

    this._model = model;
    this._flavors = new FlavorsSection();
    const run = (id: string, args: Record<string, string>): Promise<void> =>
      commands.execute(id, args).then(() => undefined);
    this._start = new StartSection({
      newNotebook: (flavor, environment) => run(CommandIDs.newNotebook, { flavor, environment }),
      newConsole: (flavor, environment) => run(CommandIDs.newConsole, { flavor, environment }),
      switchKernel: flavor => run(CommandIDs.switchKernel, { flavor })
    });
    const onJob = (id: string) => (job: { id: string }) => void run(id, { jobId: job.id });
    this._jobs = new JobsSection(
      {
        logs: onJob(CommandIDs.openLogs),
        cancel: onJob(CommandIDs.cancelJob),
        retry: onJob(CommandIDs.retryJob),
        copyId: onJob(CommandIDs.copyJobId)
      },
      {
        states: states => {
          model.stateFilter = states;
        },
        allUsers: all => {
          model.allUsers = all;
        }
      }
    );
    this.addWidget(this._flavors);
    this.addWidget(this._start);
    this.addWidget(this._kernels);
    this.addWidget(this._jobs);
    this.addWidget(this._timeline);
    this._sections = new SectionLayout(this.content as AccordionPanel, [
      { widget: this._flavors, floor: '.jp-mlinfra-FlavorCard-head' },
      { widget: this._start, floor: '', whole: true },
      { widget: this._kernels, floor: 'li' },
      { widget: this._jobs, floor: 'li', firm: true },
      { widget: this._timeline, floor: '.jp-mlinfra-Timeline-window', firm: true }
    ]);
    model.changed.connect(this._render, this);
    this._render();
  }

  /** How tall the sections are. */
  get sections(): SectionLayout {
    return this._sections;
  }

  /** The Start section (its chosen flavor and environment). */
  get start(): StartSection {
    return this._start;
  }

  get model(): MLInfraModel {
    return this._model;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._model.visible = true;
    this._sections.fit();
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    this._sections.fit();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._model.visible = false;
  }

  private _render(): void {
    const model = this._model;
    this._error.setHidden(model.error === null);
    this._error.node.textContent = model.error ?? '';
    this._flavors.render(model.flavors);
    this._start.render(model.flavors, model.environments);
    this._kernels.render(model.kernels, model.loaded);
    this._jobs.render(model.jobs, model.loaded, {
      admin: model.user?.admin ?? false,
      allUsers: model.allUsers
    });
    this._timeline.render(
      model.flavors,
      model.timelineJobs,
      Date.now() / 1000,
      model.timelineComplete
    );
    this._sections.fit();
  }

  private _model: MLInfraModel;
  private _sections: SectionLayout;
  private _flavors: FlavorsSection;
  private _start: StartSection;
  private _jobs: JobsSection;
  private _kernels = new KernelsSection();
  private _timeline = new TimelineSection();
  private _error = new Widget();
}
