/**
 * The "ML Infrastructure" sidebar panel: Flavors and Jobs sections over one model.
 */
import { Notification } from '@jupyterlab/apputils';
import { SidePanel } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { FlavorsSection } from './flavorCards';
import { mlinfraIcon } from './icon';
import { JobsSection } from './jobList';
import { errorMessage, MLInfraModel } from './model';
import { IStartActions, StartSection } from './startSection';
import { TimelineSection } from './timeline';
import { IJob, PANEL_ID } from './tokens';

/** The sidebar panel; it refreshes its model while it is visible. */
export class MLInfraPanel extends SidePanel {
  constructor(model: MLInfraModel, start: IStartActions) {
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
    this._start = new StartSection(start);
    this._jobs = new JobsSection(
      {
        cancel: job => void this._act('cancel', job),
        retry: job => void this._act('retry', job)
      },
      states => {
        model.stateFilter = states;
      }
    );
    this.addWidget(this._flavors);
    this.addWidget(this._start);
    this.addWidget(this._jobs);
    this.addWidget(this._timeline);
    model.changed.connect(this._render, this);
    this._render();
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
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._model.visible = false;
  }

  private async _act(action: 'cancel' | 'retry', job: IJob): Promise<void> {
    const label = job.name || job.id;
    try {
      if (action === 'cancel') {
        await this._model.cancel(job.id);
      } else {
        await this._model.retry(job.id);
      }
    } catch (error) {
      Notification.error(`Cannot ${action} job ${label}: ${errorMessage(error)}`, {
        autoClose: 8000
      });
    }
  }

  private _render(): void {
    const model = this._model;
    this._error.setHidden(model.error === null);
    this._error.node.textContent = model.error ?? '';
    this._flavors.render(model.flavors);
    this._start.render(model.flavors, model.environments);
    this._jobs.render(model.jobs, model.loaded);
    this._timeline.render(model.flavors, model.timelineJobs);
  }

  private _model: MLInfraModel;
  private _flavors: FlavorsSection;
  private _start: StartSection;
  private _jobs: JobsSection;
  private _timeline = new TimelineSection();
  private _error = new Widget();
}
