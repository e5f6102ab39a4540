/**
 * Command ids and the wire types of the jupyter-mlinfra REST API.
 *
 * This module has no side effects: it only declares names and types.
 */

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
export interface IAccelerator {
  /** The extended resource name, e.g. `nvidia.com/gpu`. */
  kind: string;
  /** The accelerator model, e.g. `H100`. */
  model: string;
  /** How many accelerators one node of this flavor gets. */
  count: number;
}

/** How a flavor's capacity is bought. */
export type CapacityType = 'on-demand' | 'spot' | 'reserved';

/** Live availability of a flavor. */
export interface IAvailability {
  /** Whether a job would start now rather than wait in the queue. */
  available: boolean;
  /** Whether a kernel could start now (under Kueue, quota holds jobs back, not kernels). */
  kernels_available: boolean;
  free_nodes: number;
  /** A human-readable sentence, e.g. "2 of 4 nodes free". */
  summary: string;
}

/** One hardware flavor a user can pick for a kernel or a job. */
export interface IFlavor {
  name: string;
  display_name: string;
  description: string;
  accelerator: IAccelerator | null;
  cpu: number;
  /** Memory as a Kubernetes quantity, e.g. `24Gi`. */
  memory: string;
  memory_bytes: number;
  capacity_type: CapacityType;
  price_per_hour: number | null;
  max_nodes: number;
  node_selector: Record<string, string>;
  tolerations: Record<string, unknown>[];
  /** The flavor's own volumes, which its kernels and jobs get. */
  volumes: IVolume[];
  /** Whether the current user may use this flavor. */
  entitled: boolean;
  availability: IAvailability;
}

/** `GET flavors` */
export interface IFlavorList {
  default_flavor: string;
  flavors: IFlavor[];
}

/** What the caller's job ranks run as, and whether other users' jobs can reach them. */
export interface IIsolation {
  ranks_run_as: string | null;
  isolated: boolean;
  reason: string;
}

/** `GET whoami` */
export interface IWhoAmI {
  user: string;
  groups: string[];
  admin: boolean;
  quota: Record<string, unknown>;
  usage: Record<string, unknown>;
  /** The priority classes the caller may submit at, highest first. */
  priorities: string[];
  default_priority: string;
  /** Null where the backend does not say (Kubernetes). */
  isolation?: IIsolation | null;
  /** Kubernetes only: who queues jobs; `by: 'none'` means outside any quota. */
  queueing?: IQueueing;
}

/** Who queues jobs on a cluster (`GET whoami` and `capacity`). */
export interface IQueueing {
  by: 'kueue' | 'none';
  /** The Kueue API version served, e.g. `kueue.x-k8s.io/v1beta2`. */
  api: string;
  /** Why Kueue does not queue jobs (empty when it does). */
  reason: string;
}

/** The body of every error response. */
export interface IErrorBody {
  message: string;
  field: string | null;
}

/** The life cycle of a job. */
export type JobState =
  | 'queued'
  | 'admitted'
  | 'starting'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'preempted';

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

/** One queued or finished distributed job. */
export interface IJob {
  id: string;
  name: string;
  owner: string;
  state: JobState;
  /** Why it waits or how it ended, for people. */
  reason: string;
  /** 1-based place in admission order while queued. */
  position: number | null;
  /** Likely start (epoch seconds) while queued. */
  eta: number | null;
  eta_basis: string;
  flavor: string;
  environment: string;
  nodes: number;
  procs_per_node: number;
  priority: string;
  queue: string;
  /** Epoch seconds. */
  created: number;
  started: number | null;
  finished: number | null;
  exit_code: number | null;
  attempt: number;
  devices: number[][];
  /** The failing rank's traceback, if any. */
  message: string;
}

/** `GET jobs` */
export interface IJobList {
  jobs: IJob[];
  /** Cursor for the next page. */
  next: string | null;
}

/** Query parameters of `GET jobs`. */
export interface IJobQuery {
  /** Only jobs in these states. */
  state?: readonly JobState[];
  /** Admins only: this user's jobs (an admin without it sees everybody's). */
  owner?: string;
  flavor?: string;
  limit?: number;
}

/** A volume kernels and jobs see at `mount_path` (on one machine, a folder there). */
export interface IVolume {
  name: string;
  mount_path: string;
  read_only: boolean;
  kind: 'claim' | 'nfs' | 'csi' | 'host_path' | 'folder';
  /** Where it comes from, in words: `claim claim-alice`, `nfs fs:/exports`. */
  source: string;
  description: string;
}

/** One software environment a kernel or job runs in. */
export interface IEnvironment {
  name: string;
  display_name: string;
  description: string;
  framework: string;
  image: string;
  python: string;
  launcher: string;
  env: Record<string, string>;
  /** What its kernels and jobs find at which path: the home volume first, then its own. */
  volumes: IVolume[];
  /** How its kernels talk to the server (transport encryption). */
  kernels: IKernelTransport;
}

/** Whether an environment's kernels can start under the server's transport encryption. */
export interface IKernelTransport {
  /** false: the server requires encryption that this environment's kernels cannot do. */
  available: boolean;
  encrypted: boolean;
  /** Why (not), e.g. "kernels run with CurveZMQ transport encryption". */
  summary: string;
}

/** `GET environments` */
export interface IEnvironmentList {
  default_environment: string;
  environments: IEnvironment[];
}

/** The phases of a pod kernel's start, in the order they usually come. */
export type KernelPhase =
  | 'scheduling'
  | 'unschedulable'
  | 'scaling-up'
  | 'pulling'
  | 'preparing'
  | 'starting'
  | 'ready'
  | 'failed';

/** A flavor kernel holding resources (or a recently stopped or culled one). */
export interface IKernel {
  id: string;
  /** Its kernelspec, `mlinfra-<environment>`. */
  name: string;
  owner: string;
  flavor: string;
  environment: string;
  /** Accelerator indices held (CUDA_VISIBLE_DEVICES). */
  devices: number[];
  cpus: number[];
  started: number;
  last_activity: number | null;
  execution_state: string;
  /** `starting` only for a kernel in a pod whose start is under way (Kubernetes backend). */
  state: 'starting' | 'running' | 'stopped' | 'culled';
  /** Where a pod kernel's start is (absent for local kernels). */
  phase?: KernelPhase;
  /** Why a starting kernel waits, in the cluster's words, with how long so far. */
  reason: string;
  ended: number | null;
  /** When and why the kernel last died by itself and was restarted. */
  last_exit?: { at: number; reason: string } | null;
}

/** `GET kernels` */
export interface IKernelList {
  kernels: IKernel[];
}

/** The body of `POST kernels`. */
export interface IKernelStart {
  environment?: string;
  flavor?: string;
  path?: string;
}
