/**
 * Command ids and the wire types of the jupyter-mlinfra REST API.
 *
 * The wire types are those `schema.ts` declares, which `jlpm build:schema` (openapi-typescript)
 * generates from the OpenAPI document, itself generated from the server's wire models
 * (`jupyter_mlinfra/models/`): a field added there appears here. This module has no side
 * effects: it only declares names and types.
 */

import type { components } from './schema';

type Schemas = components['schemas'];

/** The plugin id, as JupyterLab knows it. */
export const PLUGIN_ID = 'jupyter-mlinfra:plugin';

/** The REST API root, relative to the server's base URL. */
export const API_NAMESPACE = 'mlinfra/api/v1';

/** Command ids. */
export namespace CommandIDs {
  export const showFlavors = 'mlinfra:show-flavors';
  export const openPanel = 'mlinfra:open-panel';
  export const refresh = 'mlinfra:refresh';
  export const fitSections = 'mlinfra:fit-panel-sections';
  export const newNotebook = 'mlinfra:new-notebook';
  export const newConsole = 'mlinfra:new-console';
  export const switchKernel = 'mlinfra:switch-kernel';
  export const cancelJob = 'mlinfra:cancel-job';
  export const retryJob = 'mlinfra:retry-job';
  export const openLogs = 'mlinfra:open-job-logs';
  export const copyJobId = 'mlinfra:copy-job-id';
}

/** The id of the sidebar panel (also its key in the layout restorer). */
export const PANEL_ID = 'jp-mlinfra-panel';

/** The command palette category for every mlinfra command. */
export const PALETTE_CATEGORY = 'ML Infrastructure';

/** An accelerator attached to each node of a flavor. */
export type IAccelerator = Schemas['Accelerator'];

/** Live availability of a flavor. */
export type IAvailability = Schemas['Availability'];

/** One hardware flavor a user can pick for a kernel or a job. */
export type IFlavor = Schemas['Flavor'];

/** How a flavor's capacity is bought. */
export type CapacityType = IFlavor['capacity_type'];

/** `GET flavors` */
export type IFlavorList = Schemas['FlavorList'];

/** What the caller's job ranks run as, and whether other users' jobs can reach them. */
export type IIsolation = Schemas['Isolation'];

/** `GET whoami` */
export type IWhoAmI = Schemas['Whoami'];

/** Who queues jobs on a cluster (`GET whoami` and `capacity`). */
export type IQueueing = Schemas['Queueing'];

/** The body of every error response. */
export type IErrorBody = Schemas['Error'];

/** One queued or finished distributed job. */
export type IJob = Schemas['Job'];

/** The life cycle of a job. */
export type JobState = IJob['state'];

/** Every job state, in life-cycle order. */
export const JOB_STATES: readonly JobState[] = [
  'queued',
  'admitted',
  'starting',
  'running',
  'succeeded',
  'failed',
  'cancelled',
  'preempted'
];

/** States in which a job has ended. */
export const FINISHED_JOB_STATES: readonly JobState[] = [
  'succeeded',
  'failed',
  'cancelled',
  'preempted'
];

/** States in which a job still waits or runs, so it can be cancelled. */
export const ACTIVE_JOB_STATES: readonly JobState[] = [
  'queued',
  'admitted',
  'starting',
  'running'
];

/** `GET jobs` */
export type IJobList = Schemas['JobList'];

/** Query parameters of `GET jobs`, as the client takes them (`state` joined with commas). */
export interface IJobQuery {
  /** Only jobs in these states. */
  state?: readonly JobState[];
  /** Admins only: this user's jobs (an admin without it sees everybody's). */
  owner?: string;
  flavor?: string;
  limit?: number;
}

/** A volume kernels and jobs see at its mount path (on one machine, a folder there). */
export type IVolume = Schemas['Volume'];

/** One software environment a kernel or job runs in. */
export type IEnvironment = Schemas['Environment'];

/** Whether an environment's kernels can start under the server's transport encryption. */
export type IKernelTransport = Schemas['KernelTransport'];

/** `GET environments` */
export type IEnvironmentList = Schemas['EnvironmentList'];

/** A flavor kernel holding resources (or a recently stopped or culled one). */
export type IKernel = Schemas['Kernel'];

/** The phases of a pod kernel's start, in the order they usually come. */
export type KernelPhase = NonNullable<IKernel['phase']>;

/** `GET kernels` */
export type IKernelList = Schemas['KernelList'];

/** What a kernelspec the server generates starts: its `metadata.mlinfra`. */
export type IKernelSpecStart = Schemas['KernelSpecStart'];

/** The body of `POST kernels`. */
export type IKernelStart = Schemas['KernelStart'];

/**
 * One message of the live-updates websocket (`mlinfra/api/v1/live`), told apart by `type`:
 * `hello` on connecting, `job` after a change of one, `kernels` and `capacity` (read those
 * again), `live` (false: changes stopped; true: they are pushed again, read everything once).
 */
export type ILiveMessage = Schemas['LiveMessage'];
