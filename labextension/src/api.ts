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
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, path);

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new MLInfraError(`Cannot reach the server: ${reason}`, 0);
  }

  const text = await response.text();
  let body: unknown = null;
  if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }

  if (!response.ok) {
    if (isErrorBody(body)) {
      throw new MLInfraError(body.message, response.status, body.field ?? null);
    }
    throw new MLInfraError(
      `${response.status} ${response.statusText || 'error'} from ${path}`,
      response.status
    );
  }
  if (body === null && text.length > 0) {
    throw new MLInfraError(`Invalid JSON from ${path}`, response.status);
  }
  return body as T;
}

/** The flavors the server offers, with live availability. */
export function listFlavors(): Promise<IFlavorList> {
  return requestAPI<IFlavorList>('flavors');
}

/** The current user, their groups, quota and usage. */
export function whoami(): Promise<IWhoAmI> {
  return requestAPI<IWhoAmI>('whoami');
}

/** The caller's jobs, newest first. */
export function listJobs(query: IJobQuery = {}): Promise<IJobList> {
  const params: Record<string, string> = {};
  if (query.state && query.state.length > 0) {
    params.state = query.state.join(',');
  }
  if (query.flavor) {
    params.flavor = query.flavor;
  }
  if (query.limit !== undefined) {
    params.limit = String(query.limit);
  }
  const search = URLExt.objectToQueryString(params);
  return requestAPI<IJobList>(`jobs${search}`);
}

/** Cancel a job; answers the cancelled job. */
export function cancelJob(id: string): Promise<IJob> {
  return requestAPI<IJob>(`jobs/${encodeURIComponent(id)}`, {
    method: 'DELETE'
  });
}

/** Queue a finished job again, as its next attempt. */
export function retryJob(id: string): Promise<IJob> {
  return requestAPI<IJob>(`jobs/${encodeURIComponent(id)}/retry`, {
    method: 'POST'
  });
}

/** The environments the caller may use. */
export function listEnvironments(): Promise<IEnvironmentList> {
  return requestAPI<IEnvironmentList>('environments');
}

/** The caller's flavor kernels: running ones, then recently stopped or culled ones. */
export function listKernels(): Promise<IKernelList> {
  return requestAPI<IKernelList>('kernels');
}

/** Start a kernel of an environment on a flavor. */
export function startKernel(body: IKernelStart): Promise<IKernel> {
  return requestAPI<IKernel>('kernels', {
    method: 'POST',
    body: JSON.stringify(body)
  });
}

/** Restart a kernel (same id) on another flavor. */
export function switchKernelFlavor(id: string, flavor: string): Promise<IKernel> {
  return requestAPI<IKernel>(`kernels/${encodeURIComponent(id)}`, {
    method: 'PATCH',
    body: JSON.stringify({ flavor })
  });
}
