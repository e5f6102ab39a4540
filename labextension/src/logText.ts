/**
 * Pure helpers of the log viewer: which ranks a job has, what its state line says, and
 * whether the reader is at the bottom of the log (so new lines should scroll into view).
 */
import { durationText, isFinished } from './jobText';
import { IJob } from './tokens';

/** How close to the bottom (px) still counts as "at the bottom" for auto-scroll. */
export const BOTTOM_SLACK = 24;

/** A choice of the rank selector: '' for all ranks, else the rank number. */
export interface IRankChoice {
  value: string;
  label: string;
}

/** "All ranks", then one choice per rank of the job. */
export function rankChoices(job: IJob): IRankChoice[] {
  const ranks = Math.max(1, job.nodes * Math.max(1, job.procs_per_node));
  const choices: IRankChoice[] = [{ value: '', label: 'All ranks' }];
  for (let rank = 0; rank < ranks; rank++) {
    choices.push({ value: String(rank), label: `Rank ${rank}` });
  }
  return choices;
}

/** Whether a scrolled box shows its end, give or take `BOTTOM_SLACK` pixels. */
export function isAtBottom(scrollTop: number, clientHeight: number, scrollHeight: number): boolean {
  return scrollHeight - scrollTop - clientHeight <= BOTTOM_SLACK;
}

/** The viewer's state line: what the job is doing, or how it ended. */
export function logStateText(job: IJob, now: number = Date.now() / 1000): string {
  if (isFinished(job)) {
    const parts = [`Job ${job.state}`];
    if (job.exit_code !== null) {
      parts.push(`exit code ${job.exit_code}`);
    }
    if (job.started !== null && job.finished !== null) {
      parts.push(`ran ${durationText(job.finished - job.started)}`);
    }
    return `${parts.join(' · ')}. The log is complete.`;
  }
  if (job.state === 'queued') {
    const where = job.position !== null ? ` (position ${job.position})` : '';
    const why = job.reason ? `: ${job.reason}` : '';
    return `Queued${where}${why}. The log starts when the ranks do.`;
  }
  if (job.state === 'running' && job.started !== null) {
    return `Running for ${durationText(now - job.started)}: following the log.`;
  }
  return `${job.state[0].toUpperCase()}${job.state.slice(1)}: following the log.`;
}
