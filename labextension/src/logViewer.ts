/**
 * The job log viewer: a main-area widget that follows one job's log live, for all ranks or
 * one, and says plainly when the job has ended and the log is complete.
 */
import { ServerConnection } from '@jupyterlab/services';
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { getJob, MLInfraError, readJobLog } from './api';
import { isFinished } from './jobText';
import { isAtBottom, logStateText, rankChoices } from './logText';
import { errorMessage } from './model';
import { IJob } from './tokens';

/** How long to wait before following again after the stream broke (ms). */
export const RECONNECT_DELAY = 3000;

/** How often the state line is refreshed while the log is followed (ms). */
export const STATE_INTERVAL = 2000;

function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError';
}

/** One job's log, followed while the job waits or runs. */
export class JobLogView extends Widget {
  constructor(jobId: string, settings?: ServerConnection.ISettings) {
    super();
    this.jobId = jobId;
    this._settings = settings;
    this.addClass('jp-mlinfra-LogView');

    const bar = document.createElement('div');
    bar.className = 'jp-mlinfra-LogView-bar';
    const label = document.createElement('label');
    label.className = 'jp-mlinfra-LogView-rank';
    label.append('Show ');
    this._rank.setAttribute('aria-label', 'Rank');
    this._rank.addEventListener('change', () => this.follow());
    label.appendChild(this._rank);
    this._state.className = 'jp-mlinfra-LogView-state';
    this._state.setAttribute('role', 'status');
    this._paused.className = 'jp-mlinfra-LogView-paused';
    this._paused.textContent = 'Auto-scroll paused: scroll to the end to resume';
    this._paused.hidden = true;
    bar.append(label, this._state, this._paused);

    this._log.className = 'jp-mlinfra-LogView-log';
    this._log.tabIndex = 0;
    this._log.setAttribute('aria-label', `Log of job ${jobId}`);
    this._log.addEventListener('scroll', () => {
      this._stick = isAtBottom(
        this._log.scrollTop,
        this._log.clientHeight,
        this._log.scrollHeight
      );
      this._paused.hidden = this._stick || this._ended;
    });
    this.node.append(bar, this._log);
    // the stream carries only text: the job's state (queued → running) is asked for beside it
    this._poll = new Poll({
      factory: async () => {
        const job = await getJob(this.jobId, this._settings);
        if (!this._ended) {
          this._show(job);
        }
      },
      frequency: { interval: STATE_INTERVAL, backoff: true, max: 30000 },
      linger: 0,
      name: `jupyter-mlinfra:log-state:${jobId}`,
      standby: 'when-hidden'
    });
  }

  /** The job this viewer follows. */
  readonly jobId: string;

  /** The job as last fetched, or null before the first answer. */
  get job(): IJob | null {
    return this._job;
  }

  /** The rank shown, or null for all ranks. */
  get rank(): number | null {
    return this._rank.value === '' ? null : Number(this._rank.value);
  }

  /** (Re)start following the log of the chosen rank from its beginning. */
  follow(): void {
    this._abort?.abort();
    const abort = new AbortController();
    this._abort = abort;
    this._log.textContent = '';
    this._stick = true;
    this._ended = false;
    this._paused.hidden = true;
    this.removeClass('jp-mod-ended');
    void this._poll.start();
    void this._run(abort.signal);
  }

  dispose(): void {
    this._abort?.abort();
    this._poll.dispose();
    window.clearTimeout(this._retry);
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this._abort === null) {
      this.follow();
    }
  }

  /** Fetch the job, stream its log until the attempt ends; again while the job is active. */
  private async _run(signal: AbortSignal): Promise<void> {
    const rank = this.rank;
    try {
      for (;;) {
        this._show(await getJob(this.jobId, this._settings));
        if (signal.aborted) {
          return;
        }
        await readJobLog(
          this.jobId,
          { rank, follow: true, signal },
          text => this._append(text),
          this._settings
        );
        const job = await getJob(this.jobId, this._settings);
        if (signal.aborted) {
          return;
        }
        this._show(job);
        if (isFinished(job)) {
          this._end();
          return;
        }
        // the stream ended while the job is active: a retry started a new attempt
        this._append(`\n── attempt ${job.attempt} ──\n`);
      }
    } catch (error) {
      if (isAbort(error) || signal.aborted) {
        return;
      }
      if (error instanceof MLInfraError && error.status >= 400 && error.status < 500) {
        this._state.textContent = `Cannot follow the log: ${error.message}`;
        return; // the job is gone or not ours: trying again cannot help
      }
      this._state.textContent = `Cannot follow the log: ${errorMessage(error)}. Trying again…`;
      this._retry = window.setTimeout(() => {
        if (!signal.aborted) {
          this.follow();
        }
      }, RECONNECT_DELAY);
    }
  }

  private _show(job: IJob): void {
    const first = this._job === null;
    this._job = job;
    this.title.label = `Log: ${job.name || job.id}`;
    this.title.caption = `Log of job ${job.name || ''} ${job.id} (${job.flavor})`;
    this._state.textContent = logStateText(job);
    this.node.dataset.state = job.state;
    if (first) {
      const choices = rankChoices(job);
      for (const choice of choices) {
        const option = document.createElement('option');
        option.value = choice.value;
        option.textContent = choice.label;
        this._rank.appendChild(option);
      }
      this._rank.disabled = choices.length <= 2; // one rank: "all" and "rank 0" are the same
    }
  }

  private _append(text: string): void {
    this._log.appendChild(document.createTextNode(text));
    if (this._stick) {
      this._log.scrollTop = this._log.scrollHeight;
    }
  }

  private _end(): void {
    this._ended = true;
    void this._poll.stop();
    this._paused.hidden = true;
    this.addClass('jp-mod-ended');
    if (this._log.textContent === '') {
      this._log.textContent = '(this job wrote nothing to its log)';
    }
  }

  private _settings: ServerConnection.ISettings | undefined;
  private _poll: Poll;
  private _job: IJob | null = null;
  private _abort: AbortController | null = null;
  private _retry = 0;
  private _stick = true;
  private _ended = false;
  private _rank = document.createElement('select');
  private _state = document.createElement('span');
  private _paused = document.createElement('span');
  private _log = document.createElement('pre');
}
