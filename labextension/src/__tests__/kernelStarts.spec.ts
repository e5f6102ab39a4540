import * as http from 'http';

import { Notification } from '@jupyterlab/apputils';
import { KernelSpec, ServerConnection } from '@jupyterlab/services';

import { startKernel, stopKernel } from '../api';
import { explainDeath } from '../kernelDeaths';
import { reasonText } from '../kernelList';
import {
  activeKernels,
  elapsedText,
  findStart,
  nowSeconds,
  progressMessage,
  progressStatusText,
  specStart,
  startingText
} from '../kernelStarts';
import { KernelsModel } from '../kernelsModel';
import { KernelStartProgress, StartCancelled } from '../startProgress';
import { IKernel } from '../tokens';
import { FakeLive } from './fakeLive';
import { FakeServer, json } from './fakeServer';
import { makeKernel } from './jobs';

const OLD = 'aaaaaaaa-0000-0000-0000-000000000000';

describe('kernel start state', () => {
  it("says a starting kernel's phase, the cluster's reason and how long so far", () => {
    const kernel = makeKernel(); // pulling since 1003
    const now = 1015.4;
    expect(startingText(kernel, now)).toBe(
      'pulling image: Pulling image "pytorch/pytorch:2.5.1" (12 s)'
    );
    expect(startingText(makeKernel({ phase: 'scheduling', reason: '' }), now)).toBe(
      'waiting for a node'
    );
    expect(progressMessage('a100x1', null)).toBe('Starting a kernel on a100x1…');
    expect(progressMessage('', null)).toBe('Starting a kernel on the default flavor…');
    expect(progressMessage('', kernel, now)).toBe(
      'Starting a kernel on a100x1 — pulling image: ' +
        'Pulling image "pytorch/pytorch:2.5.1" (12 s)'
    );
    expect(progressStatusText('a100x1', kernel, now)).toBe('a100x1 · pulling image (12 s)');
    expect(progressStatusText('a100x1', kernel, now + 30)).toBe('a100x1 · pulling image (42 s)');
    expect(progressStatusText('a100x1', null)).toBe('a100x1 · starting…');
  });

  it('counts no time for a phase whose start is unknown, nor for a kernel not starting', () => {
    const unknown = makeKernel({ since: null });
    expect(elapsedText(unknown, 2000)).toBeNull();
    expect(startingText(unknown, 2000)).toBe('pulling image: Pulling image "pytorch/pytorch:2.5.1"');
    expect(progressStatusText('', unknown, 2000)).toBe('a100x1 · pulling image');
    const running = makeKernel({ state: 'running', phase: 'ready', reason: '' });
    expect(elapsedText(running, 2000)).toBeNull();
    expect(elapsedText(makeKernel({ since: 1010 }), 1005)).toBe('0 s'); // clocks apart
  });

  it('reads what a generated kernelspec starts from its metadata, not its name', () => {
    const spec = (
      name: string,
      metadata?: KernelSpec.ISpecModel['metadata']
    ): KernelSpec.ISpecModel => ({
      name,
      display_name: name,
      language: 'python',
      argv: [],
      resources: {},
      metadata
    });
    const start = { environment: 'py-cuda', flavor: 'a100x1', default_flavor: false };
    expect(specStart(spec('mlinfra-py-cuda--a100x1', { mlinfra: start }))).toEqual(start);
    // a name the server may make differently one day says nothing by itself
    expect(specStart(spec('renamed', { mlinfra: start }))).toEqual(start);
    expect(specStart(spec('mlinfra-pytorch'))).toBeNull();
    expect(specStart(spec('python3', { debugger: true }))).toBeNull();
    expect(specStart(spec('odd', { mlinfra: { environment: 'x' } }))).toBeNull();
    expect(specStart(undefined)).toBeNull();
  });

  it("lists the user's starting kernels, then running ones, and no ended ones", () => {
    const kernels = [
      makeKernel({ id: OLD, state: 'running', phase: 'ready', reason: '' }),
      makeKernel({ id: 'b', owner: 'bob' }),
      makeKernel({ id: 'c', state: 'stopped' }),
      makeKernel({ id: 'd', phase: 'unschedulable', reason: '0/2 nodes are available' })
    ];
    expect(activeKernels(kernels, 'ada').map(k => k.id)).toEqual(['d', OLD]);
  });

  it('finds the new starting kernel of the flavor and environment asked for', () => {
    const known = new Set([OLD]);
    const kernels = [
      makeKernel({ id: OLD }), // was there before this start
      makeKernel({ id: 'other-flavor', flavor: 'cpu', started: 1003 }),
      makeKernel({ id: 'older', started: 1001 }),
      makeKernel({ id: 'newer', started: 1002 }),
      makeKernel({ id: 'ready', state: 'running', phase: 'ready', started: 1004 })
    ];
    const request = { flavor: 'a100x1', environment: 'pytorch', known };
    expect(findStart(kernels, request)?.id).toBe('newer');
    expect(findStart(kernels, { ...request, flavor: '' })?.id).toBe('other-flavor');
    expect(findStart(kernels, { ...request, environment: 'jax' })).toBeNull();
    expect(findStart([], request)).toBeNull();
  });

  it('finds a kernel moved to another flavor by its id, though it was there before', () => {
    const request = { flavor: 'a100x1', environment: '', known: new Set([OLD]), kernelId: OLD };
    const moving = makeKernel({ id: OLD, phase: 'pulling', started: 1000 });
    const newer = makeKernel({ id: 'newer', started: 1002 });
    expect(findStart([newer, moving], request)?.id).toBe(OLD);
    expect(findStart([newer, { ...moving, state: 'running', phase: 'ready' }], request)).toBeNull();
  });
});

describe('KernelStartProgress', () => {
  const server = new FakeServer();
  let settings: ServerConnection.ISettings;
  let kernels: IKernel[];
  let post: Promise<http.ServerResponse>;
  let live: FakeLive;
  let model: KernelsModel;

  beforeAll(async () => {
    settings = await server.start();
  });
  afterAll(() => server.stop());
  beforeEach(async () => {
    server.routes.clear();
    Notification.manager.dismiss();
    kernels = [makeKernel({ id: OLD, state: 'running', phase: 'ready', reason: '' })];
    server.routes.set('GET kernels', (_, res) => json(res, 200, { kernels }));
    // POST kernels answers when the test says (202 with the kernel starting, or a refusal)
    post = new Promise(resolve => {
      server.routes.set('POST kernels', (_, res) => resolve(res));
    });
    live = new FakeLive();
    model = new KernelsModel(live, settings);
    live.push({ type: 'hello', user: 'ada', live: true });
    await until(() => model.loaded);
  });
  afterEach(() => model.dispose());

  const wait = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));
  const notices = () => Notification.manager.notifications;
  /** Wait until `check` holds, at most 5 s. */
  async function until(check: () => boolean): Promise<void> {
    for (let waited = 0; !check() && waited < 5000; waited += 20) {
      await wait(20);
    }
    expect(check()).toBe(true);
  }
  /** `progress` starts a kernel as the sidebar does: `POST kernels`, Cancel by `DELETE`. */
  const begin = (progress: KernelStartProgress, flavor: string, environment: string) =>
    progress.startKernel(
      flavor,
      environment,
      () => startKernel({ flavor, environment }, settings),
      id => stopKernel(id, settings)
    );
  /** The server lists `now`, and pushes that the kernels changed. */
  const change = (now: IKernel[]): void => {
    kernels = now;
    live.push({ type: 'kernels' });
  };

  it('follows its start by the id POST answers, in one notification, then says ready', async () => {
    const progress = new KernelStartProgress(model);
    const seen: string[] = [];
    progress.changed.connect(() => {
      seen.push(progress.current?.kernel?.phase ?? (progress.current ? 'asked' : 'done'));
    });
    const started = begin(progress, 'a100x1', 'pytorch');
    const res = await post;
    expect(notices()).toHaveLength(0); // not answered yet: it may be ready at once
    expect(progress.current?.kernel).toBeNull();

    const mine = makeKernel({
      id: 'new-kernel',
      started: 2000,
      phase: 'scheduling',
      since: null,
      reason: ''
    });
    json(res, 202, mine);
    change([...kernels, mine]);
    await until(() => progress.current?.kernel?.id === 'new-kernel');
    expect(notices()[0].type).toBe('in-progress');
    expect(notices()[0].message).toBe('Starting a kernel on a100x1 — waiting for a node');

    change([kernels[0], { ...mine, phase: 'pulling', reason: 'Pulling image "x"' }]);
    await until(() => progress.current?.kernel?.phase === 'pulling');
    expect(notices()).toHaveLength(1); // the same notification, updated
    expect(notices()[0].message).toBe(
      'Starting a kernel on a100x1 — pulling image: Pulling image "x"'
    );

    change([kernels[0], { ...mine, state: 'running', phase: 'ready', reason: '' }]);
    expect((await started).state).toBe('running');
    expect(notices()).toHaveLength(1);
    expect(notices()[0].type).toBe('success');
    expect(notices()[0].message).toBe('Kernel ready on a100x1');
    expect(progress.current).toBeNull();
    expect(seen).toEqual(['asked', 'scheduling', 'pulling', 'ready', 'done']);
  }, 10000);

  it('tells two starts of the same flavor and environment apart by their ids', async () => {
    const answers: http.ServerResponse[] = [];
    server.routes.set('POST kernels', (_, res) => answers.push(res));
    const progress = new KernelStartProgress(model);
    const start = () => begin(progress, 'a100x1', 'pytorch');
    const first = start();
    await until(() => answers.length === 1);
    const second = start();
    await until(() => answers.length === 2);
    // the first start's kernel is listed as the newer one: matching would swap them
    const one = makeKernel({ id: 'one', started: 2001, reason: 'Pulling image "one"' });
    const two = makeKernel({ id: 'two', started: 2000, reason: 'Pulling image "two"' });
    json(answers[0], 202, one);
    json(answers[1], 202, two);
    change([...kernels, one, two]);
    await until(() => notices().length === 2);
    const said = notices().map(n => n.message);
    expect(said.some(m => m.includes('"one"'))).toBe(true);
    expect(said.some(m => m.includes('"two"'))).toBe(true);
    change([kernels[0], { ...one, state: 'running' }, { ...two, state: 'running' }]);
    expect((await first).id).toBe('one');
    expect((await second).id).toBe('two');
  }, 10000);

  it('follows a start the server lists before it is followed (a notebook session)', async () => {
    const early = makeKernel({ id: 'early', started: 2000, since: null });
    change([...kernels, early]);
    await until(() => model.get('early') !== null); // listed before the start is followed
    const progress = new KernelStartProgress(model);
    let ready!: () => void;
    const started = progress.track('', 'pytorch', () => new Promise<void>(r => (ready = r)));
    await until(() => progress.current?.kernel?.id === 'early');
    expect(notices()[0].message).toBe(
      'Starting a kernel on a100x1 — pulling image: Pulling image "pytorch/pytorch:2.5.1"'
    );
    ready();
    await started;
    expect(notices()[0].message).toBe('Kernel ready on a100x1');
  });

  it('counts how long the phase has lasted with nothing pushed, and never asks', async () => {
    const progress = new KernelStartProgress(model);
    let ready!: () => void;
    const started = progress.track('a100x1', 'pytorch', () => new Promise<void>(r => (ready = r)));
    change([...kernels, makeKernel({ id: 'pulling', started: 2000, since: nowSeconds() - 5 })]);
    await until(() => notices().length === 1);
    const asked = server.calls('kernels').length;
    const first = notices()[0].message;
    expect(first).toMatch(/Pulling image "pytorch\/pytorch:2.5.1" \((5|6) s\)$/);
    await until(() => notices()[0].message !== first); // a second later, by the page's clock
    expect(notices()[0].message).toMatch(/\((6|7) s\)$/);
    expect(server.calls('kernels')).toHaveLength(asked);
    ready();
    await started;
  });

  it('shows nothing for a kernel that is ready before it is listed as starting', async () => {
    const progress = new KernelStartProgress(model);
    const started = begin(progress, 'cpu', 'python');
    const quick = makeKernel({ id: 'quick', phase: undefined, since: 2000, reason: '' });
    kernels = [...kernels, { ...quick, state: 'running' }]; // read after the answer: running
    json(await post, 202, quick);
    expect((await started).id).toBe('quick');
    expect(notices()).toHaveLength(0);
  });

  it("ends as an error carrying the cluster's reason when the start fails", async () => {
    const progress = new KernelStartProgress(model);
    const started = begin(progress, 'a100x8', 'pytorch');
    const reason = '0/2 nodes are available: 2 Insufficient nvidia.com/gpu.';
    const mine = makeKernel({ id: 'refused', flavor: 'a100x8', since: 2000 });
    json(await post, 202, mine);
    change([...kernels, mine]);
    await until(() => progress.current?.kernel?.id === 'refused');
    const waiting = notices()[0].id;
    const failed: IKernel = {
      ...mine,
      state: 'failed',
      reason,
      error: { message: reason, field: 'flavor', status: 409 }
    };
    change([kernels[0], failed]);
    await expect(started).rejects.toThrow(reason);
    expect(notices()).toHaveLength(1);
    expect(notices()[0].type).toBe('error');
    expect(notices()[0].message).toBe(`Cannot start a kernel on a100x8: ${reason}`);
    expect(notices()[0].options.autoClose).toBe(false);
    // a fresh notification, not an update: JupyterLab may lose an update that follows the
    // first toast of a page too closely, and "Starting…" would then stay for good
    expect(notices()[0].id).not.toBe(waiting);
    expect(progress.current).toBeNull();
  });

  it('shows only the error for a start that failed before it was first listed', async () => {
    const added: string[] = [];
    const record = (_: unknown, change: Notification.IChange): void => {
      added.push(`${change.type} ${change.notification.type}`);
    };
    Notification.manager.changed.connect(record);
    const progress = new KernelStartProgress(model);
    const started = begin(progress, 'a100x8', 'pytorch');
    const reason = '0/2 nodes are available: 2 Insufficient nvidia.com/gpu.';
    const mine = makeKernel({ id: 'quickly-refused', flavor: 'a100x8', since: 2000 });
    const error = { message: reason, field: 'flavor', status: 409 };
    kernels = [...kernels, { ...mine, state: 'failed', reason, error }]; // read after: failed
    json(await post, 202, mine);
    await expect(started).rejects.toThrow(reason);
    Notification.manager.changed.disconnect(record);
    expect(added).toEqual(['added error']); // no "Starting…" that the error would replace
  });

  it('offers Cancel while it starts, which gives the start up by its id', async () => {
    const stopped: string[] = [];
    server.routes.set('DELETE kernels/slow', (_, res) => {
      stopped.push('slow');
      kernels = kernels.filter(k => k.id !== 'slow'); // given up: no longer listed
      json(res, 200, { ...slow, state: 'stopped' });
      live.push({ type: 'kernels' });
    });
    const progress = new KernelStartProgress(model);
    const started = begin(progress, 'a100x1', 'pytorch');
    const slow = makeKernel({ id: 'slow', started: 2000, phase: 'scheduling', reason: '' });
    json(await post, 202, slow);
    change([...kernels, slow]);
    await until(() => notices().length === 1);
    const [cancel] = notices()[0].options.actions ?? [];
    expect(cancel.label).toBe('Cancel');
    const click = new MouseEvent('click', { cancelable: true });
    cancel.callback(click);
    expect(click.defaultPrevented).toBe(true); // the notification stays to say how it went
    await expect(started).rejects.toBeInstanceOf(StartCancelled);
    expect(stopped).toEqual(['slow']);
    expect(notices()[0].type).toBe('info');
    expect(notices()[0].message).toBe('Kernel start on a100x1 cancelled');
    expect(progress.current).toBeNull();
  }, 10000);

  it('says a refusal the answer itself gives (the request, the catalog)', async () => {
    const progress = new KernelStartProgress(model);
    const started = begin(progress, 'a100x8', 'old');
    const reason = "environment 'old': requires transport encryption";
    json(await post, 409, { message: reason, field: 'environment' });
    await expect(started).rejects.toThrow(reason);
    expect(notices()[0].message).toBe(`Cannot start a kernel on a100x8: ${reason}`);
  });
});

describe('a kernel that died', () => {
  const server = new FakeServer();
  let settings: ServerConnection.ISettings;
  let kernels: IKernel[];
  let live: FakeLive;
  let model: KernelsModel;
  const oom = { at: 1100, reason: "OOMKilled: the kernel ran out of the flavor's memory" };

  beforeAll(async () => {
    settings = await server.start();
    server.routes.set('GET kernels', (_, res) => json(res, 200, { kernels }));
  });
  afterAll(() => server.stop());
  beforeEach(() => {
    kernels = [];
    live = new FakeLive();
    model = new KernelsModel(live, settings);
    live.push({ type: 'hello', user: 'ada', live: true });
  });
  afterEach(() => model.dispose());

  it('is explained once per death, with the reason the server recorded and pushed', async () => {
    const id = 'died-once';
    kernels = [makeKernel({ id, state: 'running', phase: 'ready', reason: '', last_exit: oom })];
    live.push({ type: 'kernels' });
    expect(await explainDeath(id, model)).toBe(
      `The kernel on a100x1 died and is restarting: ${oom.reason}`
    );
    const again = explainDeath(id, model); // the same death is not told twice...
    const asked = server.calls('kernels').length;
    await new Promise(resolve => setTimeout(resolve, 300));
    expect(server.calls('kernels')).toHaveLength(asked); // ...nor asked about: it is pushed
    kernels = [{ ...kernels[0], last_exit: { at: 1200, reason: 'Evicted: node drained' } }];
    live.push({ type: 'kernels' });
    expect(await again).toBe('The kernel on a100x1 died and is restarting: Evicted: node drained');
  });

  it('is not explained when no reason comes in time', async () => {
    kernels = [makeKernel({ id: 'quiet', state: 'running', phase: 'ready', reason: '' })];
    live.push({ type: 'kernels' });
    expect(await explainDeath('quiet', model, 200)).toBeNull();
  });

  it('says in the Kernels section why a running kernel was restarted', () => {
    const running = makeKernel({ state: 'running', phase: 'ready', reason: '', last_exit: oom });
    expect(reasonText(running)).toMatch(/^Restarted after it died at .+: OOMKilled: the kernel/);
    expect(reasonText({ ...running, last_exit: null })).toBe('');
    expect(reasonText(makeKernel(), 1015)).toBe('Pulling image "pytorch/pytorch:2.5.1" (12 s)');
  });
});
