/**
 * Pure helpers that put a job into words: durations, ranks, and the line under a job.
 */
import { ACTIVE_JOB_STATES, FINISHED_JOB_STATES, IJob } from './tokens';

/** Whether a job still waits or runs. */
export function isActive(job: IJob): boolean {
  return ACTIVE_JOB_STATES.includes(job.state);
}

/** Whether a job has ended (its log will not grow any more). */
export function isFinished(job: IJob): boolean {
  return FINISHED_JOB_STATES.includes(job.state);
}

/** `1 min 5 s`, `2 h 3 min`: a duration for people. */
export function durationText(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    const rest = s % 60;
    return rest ? `${Math.floor(s / 60)} min ${rest} s` : `${s / 60} min`;
  }
  const minutes = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h${minutes ? ` ${minutes} min` : ''}`;
}

/** `1 node × 4 ranks`: how the job is spread. */
export function ranksText(job: IJob): string {
  const nodes = `${job.nodes} ${job.nodes === 1 ? 'node' : 'nodes'}`;
  const procs = job.procs_per_node;
  return procs > 0 ? `${nodes} × ${procs} ${procs === 1 ? 'rank' : 'ranks'}` : nodes;
}

/** The line under a job: position, reason and ETA while queued; runtime and outcome after. */
export function detailText(job: IJob, now: number = Date.now() / 1000): string {
  const parts: string[] = [];
  if (job.state === 'queued') {
    if (job.position !== null) {
      parts.push(`position ${job.position}`);
    }
    if (job.eta !== null) {
      const wait = job.eta - now;
      parts.push(wait > 0 ? `ETA in ${durationText(wait)}` : 'ETA now');
    }
  } else if (job.started !== null) {
    const verb = job.finished === null ? 'running for' : 'ran';
    parts.push(`${verb} ${durationText((job.finished ?? now) - job.started)}`);
  }
  if (job.exit_code !== null && job.state !== 'succeeded') {
    parts.push(`exit ${job.exit_code}`);
  }
  return parts.join(' · ');
}

/** `train · running · h100x4 · 0123456789ab`: a job in a list to choose from (unique by id). */
export function jobChoiceLabel(job: IJob): string {
  return [job.name, job.state, job.flavor, job.id].filter(part => part).join(' · ');
}
