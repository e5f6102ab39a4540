import { ServerConnection } from '@jupyterlab/services';

import { HINT_DELAY, MLInfraModel, RETRY_INTERVAL } from '../model';
import { IJob, IKernel } from '../tokens';
import { FakeLive } from './fakeLive';
import { FakeServer, json } from './fakeServer';
import { FLAVORS, makeJob, makeKernel, makeUser } from './jobs';

describe('MLInfraModel', () => {
  const server = new FakeServer();
  let settings: ServerConnection.ISettings;
  let jobs: IJob[];
  let kernels: IKernel[];
  let admin: boolean;
  let model: MLInfraModel;
  let live: FakeLive;
  const FALLBACK = 400;
  const wait = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

  beforeAll(async () => {
    settings = await server.start();
  });
  afterAll(() => server.stop());
  beforeEach(() => {
    server.requests.length = 0;
    jobs = [makeJob()];
    admin = false;
    server.routes.clear();
    server.routes.set('GET whoami', (_, res) => json(res, 200, makeUser(admin)));
    server.routes.set('GET flavors', (_, res) => json(res, 200, FLAVORS));
    server.routes.set('GET environments', (_, res) =>
      json(res, 200, { default_environment: 'python', environments: [] })
    );
    kernels = [];
    server.routes.set('GET kernels', (_, res) => json(res, 200, { kernels }));
    server.routes.set('GET jobs', (_, res, query) => {
      const owner = query.get('owner');
      const states = query.get('state')?.split(',') ?? [];
      const shown = jobs.filter(
        j => (!owner || j.owner === owner) && (states.length === 0 || states.includes(j.state))
      );
      json(res, 200, { jobs: shown, next: null });
    });
    live = new FakeLive();
    model = new MLInfraModel(settings, live, FALLBACK);
  });
  afterEach(() => model.dispose());

  it('loads flavors, jobs and the user, and says it changed', async () => {
    let changes = 0;
    model.changed.connect(() => changes++);
    expect(model.loaded).toBe(false);
    await model.refresh();
    expect(model.loaded).toBe(true);
    expect(model.flavors?.default_flavor).toBe('cpu');
    expect(model.jobs.map(j => j.id)).toEqual(['0123456789ab']);
    expect(model.user?.user).toBe('ada');
    expect(changes).toBe(1);
  });

  it('stays quiet when a refresh brings nothing new, and speaks when a job changed', async () => {
    await model.refresh();
    let changes = 0;
    model.changed.connect(() => changes++);
    await model.refresh();
    expect(changes).toBe(0);
    jobs = [makeJob({ state: 'succeeded', finished: 1020, exit_code: 0 })];
    await model.refresh();
    expect(changes).toBe(1);
    expect(model.jobs[0].state).toBe('succeeded');
  });

  it("lists the user's starting kernels first, and follows their phase", async () => {
    const running = makeKernel({
      id: 'aaaaaaaa-0000-0000-0000-000000000000',
      state: 'running',
      phase: 'ready',
      reason: ''
    });
    const starting = makeKernel({ started: 1005 });
    const others = makeKernel({ id: 'bbbbbbbb-0000-0000-0000-000000000000', owner: 'bob' });
    const culled = makeKernel({ id: 'cccccccc-0000-0000-0000-000000000000', state: 'culled' });
    kernels = [running, starting, others, culled];
    await model.refresh();
    expect(model.kernels.map(k => k.id)).toEqual([starting.id, running.id]);

    let changes = 0;
    model.changed.connect(() => changes++);
    kernels = [running, { ...starting, phase: 'starting', reason: 'kernel starting' }];
    await model.refresh();
    expect(changes).toBe(1);
    expect(model.kernels[0].phase).toBe('starting');
  });

  it('asks for the user only once', async () => {
    await model.refresh();
    await model.refresh();
    expect(server.calls('whoami')).toHaveLength(1);
  });

  it('lists the state filter only', async () => {
    jobs = [makeJob(), makeJob({ id: 'ba9876543210', state: 'failed' })];
    await model.refresh();
    model.stateFilter = ['failed'];
    await model.refresh();
    expect(model.jobs.map(j => j.id)).toEqual(['ba9876543210']);
    expect(server.calls('jobs').some(r => r.url.includes('state=failed'))).toBe(true);
  });

  it("shows an admin their own jobs, and everybody's with All users", async () => {
    admin = true;
    jobs = [makeJob(), makeJob({ id: 'ba9876543210', owner: 'bob' })];
    await model.refresh();
    expect(model.jobs.map(j => j.owner)).toEqual(['ada']);
    model.allUsers = true;
    await model.refresh();
    expect(model.jobs.map(j => j.owner)).toEqual(['ada', 'bob']);
    const last = server.calls('jobs').slice(-1)[0];
    expect(last.url).not.toContain('owner=');
  });

  it('never asks for owners for a user who is not an admin', async () => {
    await model.refresh();
    model.allUsers = true;
    await model.refresh();
    expect(server.calls('jobs').every(r => !r.url.includes('owner='))).toBe(true);
  });

  it("keeps the server's message while refreshes fail, then clears it", async () => {
    await model.refresh();
    server.routes.set('GET flavors', (_, res) =>
      json(res, 503, { message: 'the local agent did not answer', field: null })
    );
    await expect(model.refresh()).rejects.toThrow('the local agent did not answer');
    expect(model.error).toBe('the local agent did not answer');
    expect(model.jobs).toHaveLength(1); // what was known stays on screen
    server.routes.set('GET flavors', (_, res) => json(res, 200, FLAVORS));
    await model.refresh();
    expect(model.error).toBeNull();
  });

  it('polls slowly, only while nothing is pushed, the panel is visible and the tab in front', async () => {
    expect(live.started).toBe(true);
    await wait(FALLBACK * 2);
    expect(server.requests).toHaveLength(0); // the panel is hidden

    const visibility = jest.spyOn(document, 'visibilityState', 'get');
    visibility.mockReturnValue('hidden');
    document.dispatchEvent(new Event('visibilitychange'));
    model.visible = true; // the first showing reads everything once
    await wait(FALLBACK * 2);
    server.requests.length = 0;
    await wait(FALLBACK * 2);
    expect(server.requests).toHaveLength(0); // the tab is in the background

    visibility.mockReturnValue('visible');
    document.dispatchEvent(new Event('visibilitychange'));
    await wait(FALLBACK * 2 + 500);
    expect(server.calls('flavors').length).toBeGreaterThan(0); // no stream: the fallback

    live.push({ type: 'hello', user: 'ada', live: true });
    await wait(200);
    server.requests.length = 0;
    await wait(FALLBACK * 3);
    expect(server.requests).toHaveLength(0); // pushed: nothing is asked

    live.drop();
    await wait(FALLBACK * 2 + 500);
    expect(server.calls('jobs').length).toBeGreaterThan(0); // dropped: the fallback again
    visibility.mockRestore();
    document.dispatchEvent(new Event('visibilitychange'));
  }, 15000);

  it('reads everything again when changes are pushed again (a resync)', async () => {
    model.visible = true;
    live.push({ type: 'hello', user: 'ada', live: false });
    await model.refresh();
    server.requests.length = 0;
    jobs = [makeJob({ state: 'running', started: 1010 })];
    live.push({ type: 'live', live: true });
    await wait(200);
    expect(server.calls('jobs').length).toBeGreaterThan(0);
    expect(model.jobs[0].state).toBe('running');
  });

  it('shows a pushed job without asking the server', async () => {
    model.visible = true;
    await model.refresh();
    live.push({ type: 'hello', user: 'ada', live: true });
    await wait(200);
    server.requests.length = 0;
    let changes = 0;
    const pushed: string[] = [];
    model.changed.connect(() => changes++);
    model.jobChanged.connect((_, job) => pushed.push(`${job.id} ${job.state}`));

    live.push({ type: 'job', job: makeJob({ state: 'queued', position: 1 }) });
    const newer = makeJob({ id: 'ba9876543210', created: 2000, state: 'queued' });
    live.push({ type: 'job', job: newer });
    expect(model.jobs.map(j => j.id)).toEqual(['ba9876543210', '0123456789ab']);
    expect(model.jobs[1].position).toBe(1);
    expect(model.timelineJobs.map(j => j.id)).toEqual(['ba9876543210', '0123456789ab']);
    expect(changes).toBe(2);
    expect(pushed).toEqual(['0123456789ab queued', 'ba9876543210 queued']);
    expect(server.requests).toHaveLength(0);

    // a job that starts to hold resources moves flavors' availability: read once, soon
    live.push({ type: 'job', job: { ...newer, state: 'admitted' } });
    await wait(HINT_DELAY + 200);
    expect(server.calls('flavors')).toHaveLength(1);
    expect(server.calls('jobs')).toHaveLength(0);
  });

  it('leaves out pushed jobs the filter or the owner leaves out', async () => {
    admin = true;
    await model.refresh();
    model.stateFilter = ['failed'];
    await model.refresh();
    live.push({ type: 'job', job: makeJob({ id: 'ba9876543210', state: 'running' }) });
    expect(model.jobs).toHaveLength(0);
    live.push({ type: 'job', job: makeJob({ id: 'ba9876543210', state: 'failed' }) });
    expect(model.jobs.map(j => j.id)).toEqual(['ba9876543210']);
    live.push({ type: 'job', job: makeJob({ id: 'cba987654321', owner: 'bob', state: 'failed' }) });
    expect(model.jobs.map(j => j.id)).toEqual(['ba9876543210']); // an admin's own, by default
  });

  it('holds what is pushed while it reads, then applies it in order', async () => {
    const reading = model.refresh();
    live.push({ type: 'job', job: makeJob({ state: 'running', started: 1010 }) });
    live.push({ type: 'job', job: makeJob({ state: 'succeeded', finished: 1020 }) });
    await reading;
    expect(model.jobs[0].state).toBe('succeeded');
  });

  it('tries a failed reading again while changes are pushed', async () => {
    server.routes.set('GET flavors', (_, res) =>
      json(res, 504, { message: 'the local agent did not answer within 5 s', field: null })
    );
    live.push({ type: 'hello', user: 'ada', live: true });
    model.visible = true;
    await wait(300);
    expect(model.error).toBe('the local agent did not answer within 5 s');
    server.routes.set('GET flavors', (_, res) => json(res, 200, FLAVORS));
    await wait(RETRY_INTERVAL * 1.5 + 500);
    expect(model.error).toBeNull();
    expect(model.loaded).toBe(true);
    server.requests.length = 0;
    await wait(RETRY_INTERVAL * 1.5);
    expect(server.requests).toHaveLength(0); // read: nothing more is asked
  }, 15000);

  it('reads kernels and flavors once for hints that come together', async () => {
    model.visible = true;
    live.push({ type: 'hello', user: 'ada', live: true });
    await model.refresh();
    server.requests.length = 0;
    live.push({ type: 'kernels' });
    live.push({ type: 'capacity' });
    live.push({ type: 'kernels' });
    await wait(HINT_DELAY + 200);
    expect(server.calls('kernels')).toHaveLength(1);
    expect(server.calls('flavors')).toHaveLength(1);
    expect(server.calls('jobs')).toHaveLength(0);
  });

  it('follows a starting kernel by what is pushed, never by asking again and again', async () => {
    model.visible = true;
    live.push({ type: 'hello', user: 'ada', live: true });
    await model.refresh();
    let changes = 0;
    model.changed.connect(() => changes++);
    const starting = makeKernel({ started: 1005, phase: 'scheduling', reason: '' });
    kernels = [starting];
    live.push({ type: 'kernels' });
    await wait(HINT_DELAY + 200);
    expect(model.kernels.map(k => k.phase)).toEqual(['scheduling']);
    expect(changes).toBeGreaterThan(0); // the panel shows it
    server.requests.length = 0;
    await wait(2500); // a start's phase once was read every 2 s
    expect(server.requests).toHaveLength(0);
    kernels = [{ ...starting, phase: 'pulling', reason: 'Pulling image "x"' }];
    live.push({ type: 'kernels' });
    await wait(HINT_DELAY + 200);
    expect(model.kernels.map(k => k.phase)).toEqual(['pulling']);
    expect(server.calls('kernels')).toHaveLength(1);
    expect(model.allKernels.get(starting.id)?.phase).toBe('pulling'); // one copy for every view
  }, 10000);

  it('shows a cancelled job at once, from the answer of the cancel', async () => {
    await model.refresh();
    server.routes.set('DELETE jobs/0123456789ab', (_, res) =>
      json(res, 200, makeJob({ state: 'cancelled', finished: 1030 }))
    );
    await model.cancel('0123456789ab');
    expect(model.jobs[0].state).toBe('cancelled');
  });
});
