import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';
import * as http from 'http';

import { JobLogView } from '../logViewer';
import { IJob } from '../tokens';
import { FakeServer, json } from './fakeServer';
import { makeJob } from './jobs';

/** Wait until `condition` holds (at most 3 s). */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !condition(); i++) {
    await new Promise(resolve => setTimeout(resolve, 10));
  }
  expect(condition()).toBe(true);
}

describe('JobLogView', () => {
  const server = new FakeServer();
  let settings: ServerConnection.ISettings;
  let job: IJob;
  let stream: http.ServerResponse | null;
  let view: JobLogView;

  beforeAll(async () => {
    settings = await server.start();
  });
  afterAll(() => server.stop());
  beforeEach(() => {
    server.requests.length = 0;
    job = makeJob();
    stream = null;
    server.routes.clear();
    server.routes.set('GET jobs/0123456789ab', (_, res) => json(res, 200, job));
    server.routes.set('GET jobs/0123456789ab/logs', (_, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write(`log of ${job.state} job\n`);
      stream = res;
    });
    view = new JobLogView('0123456789ab', settings);
  });
  afterEach(() => view.dispose());

  const log = (): string => view.node.querySelector('pre')?.textContent ?? '';
  const state = (): string => view.node.querySelector('[role=status]')?.textContent ?? '';

  it('follows the log until the job ends, then says it is complete', async () => {
    Widget.attach(view, document.body);
    await until(() => log() === 'log of running job\n');
    expect(state()).toContain('following the log');
    expect(view.title.label).toBe('Log: train');

    stream?.write('[rank 1] done\n');
    await until(() => log().endsWith('[rank 1] done\n'));
    job = makeJob({ state: 'succeeded', finished: 1020, exit_code: 0 });
    stream?.end();
    await until(() => view.hasClass('jp-mod-ended'));
    expect(state()).toBe('Job succeeded · exit code 0 · ran 10 s. The log is complete.');
    expect(log()).toBe('log of running job\n[rank 1] done\n');
  });

  it('follows one rank from its start when one is chosen', async () => {
    Widget.attach(view, document.body);
    await until(() => log() !== '');
    const select = view.node.querySelector('select') as HTMLSelectElement;
    const labels = Array.from(select.options, o => o.textContent);
    expect(labels).toEqual(['All ranks', 'Rank 0', 'Rank 1']);
    select.value = '1';
    select.dispatchEvent(new Event('change'));
    await until(() => server.calls('jobs/0123456789ab/logs').length === 2);
    expect(view.rank).toBe(1);
    expect(server.calls('jobs/0123456789ab/logs')[1].url).toMatch(/rank=1/);
    await until(() => log() === 'log of running job\n'); // the text starts over
  });

  it('follows the next attempt when the job is retried', async () => {
    Widget.attach(view, document.body);
    await until(() => log() !== '');
    job = makeJob({ state: 'queued', attempt: 2, started: null });
    stream?.end();
    await until(() => log().includes('── attempt 2 ──'));
    await until(() => log().endsWith('log of queued job\n'));
    expect(state()).toContain('Queued');
  });

  it('keeps the end of a long log, from a line start, and offers the whole log', async () => {
    view.dispose();
    view = new JobLogView('0123456789ab', settings, 30);
    Widget.attach(view, document.body);
    await until(() => log() === 'log of running job\n');
    const notice = view.node.querySelector('.jp-mlinfra-LogView-trimmed') as HTMLElement;
    expect(notice.hidden).toBe(true);
    stream?.write('line two\nline three\n');
    await until(() => log().endsWith('line three\n'));
    expect(log()).toBe('line two\nline three\n'); // 39 characters would not fit in 30
    expect(notice.hidden).toBe(false);
    stream?.write('a line far longer than the limit itself\nend\n');
    await until(() => log().endsWith('end\n'));
    expect(log()).toBe('end\n');
    const download = view.node.querySelector('a') as HTMLAnchorElement;
    expect(download.download).toBe('job-0123456789ab.log');
    expect(download.href).toBe(`${settings.baseUrl}mlinfra/api/v1/jobs/0123456789ab/logs`);
  });

  it("stops with the server's message when the job is not there", async () => {
    server.routes.set('GET jobs/0123456789ab', (_, res) =>
      json(res, 404, { message: "no job '0123456789ab'", field: 'id' })
    );
    Widget.attach(view, document.body);
    await until(() => state() !== '');
    expect(state()).toBe("Cannot follow the log: no job '0123456789ab'");
    expect(server.calls('jobs/0123456789ab/logs')).toHaveLength(0);
  });
});
