/**
 * The one client of the jupyter-mlinfra REST API.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  API_NAMESPACE,
  IEnvironmentList,
  IErrorBody,
  IFlavorList,
  IJob,
  IJobList,
  IJobQuery,
  IKernel,
  IKernelList,
  IKernelStart,
  IWhoAmI
} from './tokens';

/** An error answered by the server (or a failure to reach it). */
export class MLInfraError extends Error {
  constructor(
    message: string,
    /** The HTTP status, or 0 when the server could not be reached. */
    readonly status: number,
    /** The request field the server blamed, if any. */
    readonly field: string | null = null
  ) {
    super(message);
    this.name = 'MLInfraError';
  }
}

function isErrorBody(value: unknown): value is IErrorBody {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

/** Send a request to `<base_url>mlinfra/api/v1/<path>`; a network failure is an `MLInfraError`. */
async function send(
  path: string,
  init: RequestInit,
  settings: ServerConnection.ISettings
): Promise<Response> {
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, path);
  try {
    return await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    if (error instanceof Error && error.name === 'AbortError') {
      throw error; // the caller stopped it: not a failure to report
    }
    const reason = error instanceof Error ? error.message : String(error);
    throw new MLInfraError(`Cannot reach the server: ${reason}`, 0);
  }
}

function parseJSON(text: string): unknown {
  if (text.length === 0) {
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The error a non-2xx answer stands for, with the server's message when it sent one. */
function failure(response: Response, text: string, path: string): MLInfraError {
  const body = parseJSON(text);
  if (isErrorBody(body)) {
    return new MLInfraError(body.message, response.status, body.field ?? null);
  }
  return new MLInfraError(
    `${response.status} ${response.statusText || 'error'} from ${path}`,
    response.status
  );
}

/**
 * Call `<base_url>mlinfra/api/v1/<path>` and return its JSON body.
 *
 * Throws `MLInfraError` carrying the server's `message` on any failure.
 */
export async function requestAPI<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const response = await send(path, init, settings);
  const text = await response.text();
  if (!response.ok) {
    throw failure(response, text, path);
  }
  const body = parseJSON(text);
  if (body === null && text.length > 0) {
    throw new MLInfraError(`Invalid JSON from ${path}`, response.status);
  }
  return body as T;
}

/** Settings of the server this page came from (tests pass their own). */
type Settings = ServerConnection.ISettings;
const here = (): Settings => ServerConnection.makeSettings();

/** The flavors the server offers, with live availability. */
export function listFlavors(settings: Settings = here()): Promise<IFlavorList> {
  return requestAPI<IFlavorList>('flavors', {}, settings);
}

/** The current user, their groups, whether they are an admin, quota and usage. */
export function whoami(settings: Settings = here()): Promise<IWhoAmI> {
  return requestAPI<IWhoAmI>('whoami', {}, settings);
}

/** `?state=a,b&owner=x&limit=n`: the query string of `GET jobs`. */
export function jobsQueryString(query: IJobQuery): string {
  const params: Record<string, string> = {};
  if (query.state && query.state.length > 0) {
    params.state = query.state.join(',');
  }
  if (query.owner) {
    params.owner = query.owner;
  }
  if (query.flavor) {
    params.flavor = query.flavor;
  }
  if (query.limit !== undefined) {
    params.limit = String(query.limit);
  }
  return URLExt.objectToQueryString(params);
}

/** The caller's jobs (an admin's: everybody's, or `owner`'s), newest first. */
export function listJobs(query: IJobQuery = {}, settings: Settings = here()): Promise<IJobList> {
  return requestAPI<IJobList>(`jobs${jobsQueryString(query)}`, {}, settings);
}

/** One job, with its queue position and reason while it waits. */
export function getJob(id: string, settings: Settings = here()): Promise<IJob> {
  return requestAPI<IJob>(`jobs/${encodeURIComponent(id)}`, {}, settings);
}

/** Cancel a job; answers the cancelled job. */
export function cancelJob(id: string, settings: Settings = here()): Promise<IJob> {
  return requestAPI<IJob>(`jobs/${encodeURIComponent(id)}`, { method: 'DELETE' }, settings);
}

/** Queue a finished job again, as its next attempt. */
export function retryJob(id: string, settings: Settings = here()): Promise<IJob> {
  return requestAPI<IJob>(`jobs/${encodeURIComponent(id)}/retry`, { method: 'POST' }, settings);
}

/** The address of a job's whole log (one rank's, or all ranks'), e.g. for a download link. */
export function jobLogUrl(
  id: string,
  rank: number | null,
  settings: Settings = here()
): string {
  const params = rank === null ? {} : { rank: String(rank) };
  const path = `jobs/${encodeURIComponent(id)}/logs${URLExt.objectToQueryString(params)}`;
  return URLExt.join(settings.baseUrl, API_NAMESPACE, path);
}

/**
 * Read a job's log (all ranks merged with `[rank N]` prefixes, or one rank's), handing each
 * piece of text to `onText` as it arrives. With `follow` the server keeps the answer open
 * until the job's attempt ends, so this resolves when the job finished (or was retried).
 *
 * Rejects with `MLInfraError`, or with an `AbortError` when `signal` aborts.
 */
export async function readJobLog(
  id: string,
  options: { rank?: number | null; follow?: boolean; signal?: AbortSignal },
  onText: (text: string) => void,
  settings: Settings = here()
): Promise<void> {
  const params: Record<string, string> = {};
  if (options.rank !== undefined && options.rank !== null) {
    params.rank = String(options.rank);
  }
  if (options.follow) {
    params.follow = 'true';
  }
  const path = `jobs/${encodeURIComponent(id)}/logs${URLExt.objectToQueryString(params)}`;
  const response = await send(path, { signal: options.signal }, settings);
  if (!response.ok) {
    throw failure(response, await response.text(), path);
  }
  if (response.body === null) {
    onText(await response.text());
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      break;
    }
    const text = decoder.decode(value, { stream: true });
    if (text) {
      onText(text);
    }
  }
  const rest = decoder.decode();
  if (rest) {
    onText(rest);
  }
}

/** The environments the caller may use. */
export function listEnvironments(settings: Settings = here()): Promise<IEnvironmentList> {
  return requestAPI<IEnvironmentList>('environments', {}, settings);
}

/** The caller's flavor kernels: running ones, then recently stopped or culled ones. */
export function listKernels(settings: Settings = here()): Promise<IKernelList> {
  return requestAPI<IKernelList>('kernels', {}, settings);
}

/** Start a kernel of an environment on a flavor: answers at once, the kernel starting. */
export function startKernel(body: IKernelStart, settings: Settings = here()): Promise<IKernel> {
  return requestAPI<IKernel>('kernels', { method: 'POST', body: JSON.stringify(body) }, settings);
}

/** Stop a kernel; one still starting gives its start up (a pod waiting for a node). */
export function stopKernel(id: string, settings: Settings = here()): Promise<IKernel> {
  return requestAPI<IKernel>(`kernels/${encodeURIComponent(id)}`, { method: 'DELETE' }, settings);
}

/** Restart a kernel (same id) on another flavor. */
export function switchKernelFlavor(
  id: string,
  flavor: string,
  settings: Settings = here()
): Promise<IKernel> {
  return requestAPI<IKernel>(
    `kernels/${encodeURIComponent(id)}`,
    { method: 'PATCH', body: JSON.stringify({ flavor }) },
    settings
  );
}
