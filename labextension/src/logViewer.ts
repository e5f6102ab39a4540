/**
 * The job log viewer: a main-area widget that follows one job's log live, for all ranks or
 * one, and says plainly when the job has ended and the log is complete.
 */
import { ServerConnection } from '@jupyterlab/services';
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { getJob, jobLogUrl, MLInfraError, readJobLog } from './api';
import { isFinished } from './jobText';
import { isAtBottom, logStateText, rankChoices } from './logText';
import { errorMessage } from './model';
import { IJob } from './tokens';

/** How long to wait before following again after the stream broke (ms). */
export const RECONNECT_DELAY = 3000;

/** How often the state line is read while the log is followed and nothing is pushed (ms). */
export const STATE_INTERVAL = 2000;

/** Where pushed job changes come from (the sidebar's model). */
export interface IJobUpdates {
  readonly jobChanged: ISignal<unknown, IJob>;
  /** Whether changes are pushed now; when not, the viewer reads its job itself. */
  readonly live: boolean;
}

/**
 * How much of a log the viewer keeps (characters): a job printing for days must not grow the
 * page without bound. Older text gives way; the whole log stays a download away.
 */
export const MAX_LOG_CHARS = 2_000_000;

function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError';
}

/** One job's log, followed while the job waits or runs. */
export class JobLogView extends Widget {
  constructor(
    jobId: string,
    settings?: ServerConnection.ISettings,
    maxChars: number = MAX_LOG_CHARS,
    updates?: IJobUpdates
  ) {
    super();
    this.jobId = jobId;
    this._settings = settings;
    this._maxChars = maxChars;
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
    this._download.className = 'jp-mlinfra-LogView-download';
    this._download.textContent = 'Download';
    this._download.download = `job-${jobId}.log`;
    this._download.title = 'Download the whole log of the ranks shown';
    bar.append(label, this._state, this._paused, this._download);

    this._trimmed.className = 'jp-mlinfra-LogView-trimmed';
    this._trimmed.textContent =
      'Earlier output is not shown: this view keeps the end of the log. ' +
      'Download gives the whole log.';
    this._trimmed.hidden = true;

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
    this.node.append(bar, this._trimmed, this._log);
    // the log carries only text: the job's state (queued → running) comes pushed beside it,
    // or, while nothing is pushed, is asked for
    updates?.jobChanged.connect(this._onJobChanged, this);
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
      standby: () => (updates?.live ? true : 'when-hidden')
    });
  }

  private _onJobChanged(_: unknown, job: IJob): void {
    if (job.id === this.jobId && !this._ended) {
      this._show(job);
    }
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
    this._chars = 0;
    this._trimmed.hidden = true;
    this._download.href = jobLogUrl(this.jobId, this.rank, this._settings);
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
    Signal.clearData(this);
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
    this._chars += text.length;
    this._trim();
    if (this._stick) {
      this._log.scrollTop = this._log.scrollHeight;
    }
  }

  /** Drop the oldest text beyond the limit, up to a line's end, so the view starts on a line. */
  private _trim(): void {
    let excess = this._chars - this._maxChars;
    if (excess <= 0) {
      return;
    }
    this._trimmed.hidden = false;
    let atLineStart = false;
    while (this._log.firstChild !== null && (excess > 0 || !atLineStart)) {
      const node = this._log.firstChild as Text;
      const newline = node.data.indexOf('\n', Math.max(excess - 1, 0));
      const cut = newline === -1 ? node.data.length : newline + 1;
      atLineStart = node.data[cut - 1] === '\n';
      excess -= cut;
      this._chars -= cut;
      if (cut === node.data.length) {
        node.remove();
      } else {
        node.deleteData(0, cut);
      }
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
  private _maxChars: number;
  private _chars = 0;
  private _download = document.createElement('a');
  private _trimmed = document.createElement('div');
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
