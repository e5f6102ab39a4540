import { StartSection } from '../startSection';
import { IEnvironment, IEnvironmentList, IFlavorList } from '../tokens';
import { FLAVORS } from './jobs';

const ENVIRONMENTS: IEnvironmentList = {
  default_environment: 'python',
  environments: [
    {
      name: 'python',
      display_name: 'Python 3.11',
      description: '',
      framework: 'generic',
      image: '',
      python: 'python3',
      launcher: 'process',
      env: {},
      volumes: [],
      kernels: { available: true, encrypted: true, summary: 'kernels run encrypted' }
    }
  ]
};

const REFUSED =
  'kernels cannot start: this server requires transport encryption and ipykernel 7.2.0' +
  ' of /opt/old/python does not support CurveZMQ';
const OLD: IEnvironment = {
  ...ENVIRONMENTS.environments[0],
  name: 'old',
  display_name: 'Old',
  kernels: { available: false, encrypted: false, summary: REFUSED }
};

function withAvailability(available: boolean, kernelsAvailable = available): IFlavorList {
  const [cpu] = FLAVORS.flavors;
  const availability = { ...cpu.availability, available, kernels_available: kernelsAvailable };
  return { ...FLAVORS, flavors: [{ ...cpu, availability }] };
}

describe('StartSection', () => {
  const started: string[] = [];
  const record = async (what: string): Promise<void> => void started.push(what);
  const section = new StartSection({
    newNotebook: (flavor, environment) => record(`notebook ${flavor} ${environment}`),
    newConsole: (flavor, environment) => record(`console ${flavor} ${environment}`),
    switchKernel: flavor => record(`switch ${flavor}`)
  });
  const select = (name: string) =>
    section.node.querySelector(`select[aria-label=${name}]`) as HTMLSelectElement;
  const button = (text: string) =>
    Array.from(section.node.querySelectorAll('button')).find(b => b.textContent === text)!;

  it('chooses the default flavor and environment, and starts on them', async () => {
    section.render(withAvailability(true), ENVIRONMENTS);
    expect([section.flavor, section.environment]).toEqual(['cpu', 'python']);
    button('New console').click();
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(started).toEqual(['console cpu python']);
  });

  it('offers a flavor whose jobs wait for quota, since its kernels need none', () => {
    section.render(withAvailability(false, true), ENVIRONMENTS);
    expect(section.flavor).toBe('cpu');
    expect(button('New notebook').disabled).toBe(false);
  });

  it('shows an environment whose kernels cannot start, saying why, and never chooses it', () => {
    const environments = {
      default_environment: 'old',
      environments: [OLD, ...ENVIRONMENTS.environments]
    };
    section.render(withAvailability(true), environments);
    expect(section.environment).toBe('python');
    const old = Array.from(select('Environment').options).find(o => o.value === 'old')!;
    expect([old.disabled, old.textContent, old.title]).toEqual([
      true,
      'Old · cannot start kernels',
      REFUSED
    ]);
    const alone = { default_environment: 'old', environments: [OLD] };
    section.render(withAvailability(true), alone);
    expect(section.environment).toBe('');
    expect(select('Environment').selectedOptions[0].textContent).toBe('None can start kernels');
    expect(button('New notebook').disabled).toBe(true);
  });

  it('says when no flavor is free, and offers nothing to start', () => {
    section.render(withAvailability(false), ENVIRONMENTS);
    expect(section.flavor).toBe('');
    expect(select('Flavor').selectedOptions[0].textContent).toBe('None free now');
    for (const text of ['New notebook', 'New console', "Switch this notebook's kernel"]) {
      expect(button(text).disabled).toBe(true);
    }
  });

  it('says where the environment and the flavor put files', () => {
    const home = {
      name: 'home',
      mount_path: '/home/jovyan',
      read_only: false,
      kind: 'claim' as const,
      source: 'claim claim-alice',
      description: ''
    };
    const imagenet = {
      ...home,
      name: 'imagenet',
      mount_path: '/data/imagenet',
      read_only: true,
      source: 'claim imagenet',
      description: 'ImageNet 2012'
    };
    const environments = {
      ...ENVIRONMENTS,
      environments: [{ ...ENVIRONMENTS.environments[0], volumes: [home, imagenet] }]
    };
    section.render(withAvailability(true), environments);
    const files = section.node.querySelector('.jp-mlinfra-StartSection-files') as HTMLElement;
    expect(files.hidden).toBe(false);
    expect(files.textContent).toBe(
      'Files: home at /home/jovyan (claim claim-alice) · ' +
        'imagenet at /data/imagenet (read-only, claim imagenet)'
    );
    expect(files.title).toContain('imagenet at /data/imagenet (read-only, claim imagenet): ImageNet 2012');
    section.render(withAvailability(true), ENVIRONMENTS);
    expect(files.hidden).toBe(true);
  });
});
