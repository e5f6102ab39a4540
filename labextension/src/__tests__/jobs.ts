/** Wire objects for tests, complete as the server sends them. */
import { IFlavorList, IJob, IKernel, IWhoAmI } from '../tokens';

export function makeJob(overrides: Partial<IJob> = {}): IJob {
  return {
    id: '0123456789ab',
    name: 'train',
    owner: 'ada',
    state: 'running',
    reason: '',
    position: null,
    eta: null,
    eta_basis: '',
    flavor: 'h100x2',
    environment: 'python',
    nodes: 1,
    procs_per_node: 2,
    priority: 'normal',
    queue: 'default',
    created: 1000,
    started: 1010,
    finished: null,
    exit_code: null,
    attempt: 1,
    devices: [[0, 1]],
    message: '',
    ...overrides
  };
}

export const FLAVORS: IFlavorList = {
  default_flavor: 'cpu',
  flavors: [
    {
      name: 'cpu',
      display_name: 'CPU',
      description: 'one core',
      accelerator: null,
      cpu: 1,
      memory: '4Gi',
      memory_bytes: 4 * 1024 ** 3,
      capacity_type: 'on-demand',
      price_per_hour: null,
      max_nodes: 1,
      node_selector: {},
      tolerations: [],
      volumes: [],
      entitled: true,
      availability: {
        available: true,
        kernels_available: true,
        free_nodes: 1,
        summary: '2 of 2 CPUs free'
      }
    }
  ]
};

export function makeUser(admin: boolean): IWhoAmI {
  return {
    user: 'ada',
    groups: [],
    admin,
    backend: 'local',
    quota: { max_gpus: null, max_running_jobs: null, max_queued_jobs: null },
    usage: { gpus: 0, running_jobs: 0, queued_jobs: 0, kernels: 0 },
    flavors: ['cpu', 'a100x1'],
    priorities: admin ? ['high', 'normal', 'low'] : ['normal'],
    default_priority: 'normal',
    isolation: null
  };
}

export function makeKernel(overrides: Partial<IKernel> = {}): IKernel {
  return {
    id: '11111111-2222-3333-4444-555555555555',
    name: 'mlinfra-pytorch',
    owner: 'ada',
    flavor: 'a100x1',
    environment: 'pytorch',
    devices: [],
    cpus: [],
    started: 1000,
    last_activity: null,
    execution_state: 'starting',
    state: 'starting',
    phase: 'pulling',
    since: 1003,
    reason: 'Pulling image "pytorch/pytorch:2.5.1"',
    ended: null,
    ...overrides
  };
}
