import { ServerConnection } from '@jupyterlab/services';

import { KERNELS_HINT_DELAY, KernelsModel } from '../kernelsModel';
import { IKernel } from '../tokens';
import { FakeLive } from './fakeLive';
import { FakeServer, json } from './fakeServer';
import { makeKernel } from './jobs';

describe('KernelsModel', () => {
  const server = new FakeServer();
  let settings: ServerConnection.ISettings;
  let kernels: IKernel[];
  let live: FakeLive;
  let model: KernelsModel;
  const FALLBACK = 300;
  const wait = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));
  const reads = () => server.calls('kernels').length;
  async function until(check: () => boolean): Promise<void> {
    for (let waited = 0; !check() && waited < 5000; waited += 20) {
      await wait(20);
    }
    expect(check()).toBe(true);
  }

  beforeAll(async () => {
    settings = await server.start();
  });
  afterAll(() => server.stop());
  beforeEach(() => {
    server.requests.length = 0;
    server.routes.clear();
    kernels = [makeKernel()];
    server.routes.set('GET kernels', (_, res) => json(res, 200, { kernels }));
    live = new FakeLive();
    model = new KernelsModel(live, settings, FALLBACK);
  });
  afterEach(() => model.dispose());

  it('reads once when the stream says hello, then only when kernels changed', async () => {
    await wait(FALLBACK * 2);
    expect(reads()).toBe(0); // nothing before the stream says whether it pushes
    let changes = 0;
    model.changed.connect(() => changes++);
    live.push({ type: 'hello', user: 'ada', live: true });
    await until(() => model.loaded);
    expect(reads()).toBe(1);
    expect(changes).toBe(1);
    expect(model.get(kernels[0].id)?.phase).toBe('pulling');

    await wait(FALLBACK * 3); // a kernel starting is no reason to ask: its changes are pushed
    expect(reads()).toBe(1);

    kernels = [{ ...kernels[0], phase: 'starting', reason: 'starting the kernel' }];
    live.push({ type: 'kernels' });
    live.push({ type: 'kernels' }); // hints that come together are read once
    live.push({ type: 'capacity' }); // not about kernels
    await until(() => model.get(kernels[0].id)?.phase === 'starting');
    await wait(KERNELS_HINT_DELAY * 3);
    expect(reads()).toBe(2);
    expect(changes).toBe(2);

    live.push({ type: 'kernels' }); // the same list: nothing to tell
    await until(() => reads() === 3);
    await wait(KERNELS_HINT_DELAY);
    expect(changes).toBe(2);
  });

  it('reads every fallback interval while nothing is pushed, and once when it is again', async () => {
    live.push({ type: 'hello', user: 'ada', live: true });
    await until(() => model.loaded);
    live.drop();
    await until(() => reads() >= 3); // the stream is down: the fallback reads
    live.push({ type: 'hello', user: 'ada', live: true }); // back: read once, then no more
    await wait(KERNELS_HINT_DELAY * 3);
    const back = reads();
    await wait(FALLBACK * 3);
    expect(reads()).toBe(back);
  });

  it('keeps the answer of the reading asked last', async () => {
    const answers: Array<() => void> = [];
    server.routes.set('GET kernels', (_, res) => {
      const now = kernels;
      answers.push(() => json(res, 200, { kernels: now }));
    });
    const older = model.refresh();
    await until(() => answers.length === 1);
    kernels = [];
    const newer = model.refresh();
    await until(() => answers.length === 2);
    answers[1]();
    await newer;
    answers[0](); // the older answer, late
    await older;
    expect(model.kernels).toEqual([]);
  });

  it('follows a start by reading on its own when the push of its outcome is lost', async () => {
    live.push({ type: 'hello', user: 'ada', live: true });
    await until(() => model.loaded);
    const [starting] = kernels;
    const settled = model.settled(starting.id);
    await wait(FALLBACK * 2);
    const failure = { message: 'not started: unschedulable', field: null, status: 409 };
    kernels = [{ ...starting, state: 'failed', error: failure }]; // and no `kernels` push
    await expect(settled).rejects.toThrow('not started: unschedulable');

    const followed = reads();
    await wait(FALLBACK * 3); // settled: no more reads of its own, pushes are on
    expect(reads()).toBe(followed);
  });
});
