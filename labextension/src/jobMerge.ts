/**
 * Putting one pushed job into a list the server gave (newest first), as a fresh listing
 * would show it: in its place by creation time, or out of the list when it no longer belongs.
 */
import { IJob, JobState } from './tokens';

/** Whether a job in `state` holds devices, CPUs and memory (flavors' availability moves). */
export function holdsResources(state: JobState | undefined): boolean {
  return state === 'admitted' || state === 'starting' || state === 'running';
}

function newer(a: IJob, b: IJob): boolean {
  return a.created > b.created || (a.created === b.created && a.id > b.id);
}

/**
 * `jobs` with `job` in its place when `belongs`, else without it; at most `limit` long. A job
 * older than the last of a full list is left out, as the listing would leave it on a later page.
 */
export function mergeJob(jobs: readonly IJob[], job: IJob, belongs: boolean, limit: number): IJob[] {
  const others = jobs.filter(j => j.id !== job.id);
  if (!belongs) {
    return others;
  }
  const at = others.findIndex(j => newer(job, j));
  if (at < 0) {
    return others.length < limit ? [...others, job] : others;
  }
  return [...others.slice(0, at), job, ...others.slice(at)].slice(0, limit);
}
