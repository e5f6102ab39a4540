import { ServerConnection } from '@jupyterlab/services';

import {
  cancelJob,
  jobsQueryString,
  listJobs,
  MLInfraError,
  readJobLog,
  requestAPI,
  startKernel
} from '../api';
import { FakeServer, json, TOKEN } from './fakeServer';
import { makeJob } from './jobs';

/** The error a call rejected with (fails the test when it resolved). */
async function failureOf(call: Promise<unknown>): Promise<MLInfraError> {
  try {
    await call;
  } catch (error) {
    return error as MLInfraError;
  }
  throw new Error('the call succeeded');
}

describe('the API client', () => {
  const server = new FakeServer();
  let settings: ServerConnection.ISettings;

  beforeAll(async () => {
    settings = await server.start();
  });
  afterAll(() => server.stop());
  beforeEach(() => {
    server.routes.clear();
    server.requests.length = 0;
  });

  it('calls <base>/mlinfra/api/v1/<path> with the token and answers the JSON body', async () => {
    server.routes.set('GET whoami', (_, res) => json(res, 200, { user: 'ada' }));
    const body = await requestAPI<{ user: string }>('whoami', {}, settings);
    expect(body.user).toBe('ada');
    const [call] = server.calls('whoami');
    expect(call.headers.authorization).toBe(`token ${TOKEN}`);
  });

  it("throws the server's message, status and field on an error answer", async () => {
    server.routes.set('POST kernels', (_, res) =>
      json(res, 400, { message: 'flavor: unknown "h900"', field: 'flavor' })
    );
    const error = await failureOf(startKernel({ flavor: 'h900' }, settings));
    expect(error).toBeInstanceOf(MLInfraError);
    expect(error.message).toBe('flavor: unknown "h900"');
    expect(error.status).toBe(400);
    expect(error.field).toBe('flavor');
    expect(JSON.parse(server.calls('kernels')[0].body)).toEqual({ flavor: 'h900' });
  });

  it('names the status and path when an error answer has no message', async () => {
    server.routes.set('DELETE jobs/0123456789ab', (_, res) => {
      res.writeHead(502, 'Bad Gateway');
      res.end('<html>proxy error</html>');
    });
    await expect(cancelJob('0123456789ab', settings)).rejects.toThrow(
      '502 Bad Gateway from jobs/0123456789ab'
    );
  });

  it('says so when the server cannot be reached', async () => {
    const gone = ServerConnection.makeSettings({ baseUrl: 'http://127.0.0.1:1/' });
    const error = await failureOf(requestAPI('whoami', {}, gone));
    expect(error).toBeInstanceOf(MLInfraError);
    expect(error.status).toBe(0);
    expect(error.message).toMatch(/^Cannot reach the server/);
  });

  it('rejects a 2xx answer that is not JSON', async () => {
    server.routes.set('GET flavors', (_, res) => {
      res.writeHead(200);
      res.end('not json');
    });
    await expect(requestAPI('flavors', {}, settings)).rejects.toThrow('Invalid JSON from flavors');
  });

  it('builds the query of GET jobs from states, owner, flavor and limit', async () => {
    expect(jobsQueryString({})).toBe('');
    expect(
      jobsQueryString({ state: ['queued', 'running'], owner: 'bob', flavor: 'cpu', limit: 5 })
    ).toBe('?state=queued%2Crunning&owner=bob&flavor=cpu&limit=5');
    server.routes.set('GET jobs', (_, res, query) => {
      json(res, 200, { jobs: [makeJob({ state: query.get('state') as 'queued' })], next: null });
    });
    const { jobs } = await listJobs({ state: ['queued'] }, settings);
    expect(jobs[0].state).toBe('queued');
  });

  it("streams a job's log piece by piece, for one rank, until the server ends it", async () => {
    let finish: () => void = () => undefined;
    server.routes.set('GET jobs/0123456789ab/logs', (_, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.write('step 0\n');
      finish = () => res.end('step 1 ✓\n');
    });
    const pieces: string[] = [];
    const done = readJobLog('0123456789ab', { rank: 1, follow: true }, text => {
      pieces.push(text);
      if (pieces.length === 1) {
        finish(); // the second piece is written only once the first has arrived
      }
    }, settings);
    await done;
    expect(pieces).toEqual(['step 0\n', 'step 1 ✓\n']);
    const [call] = server.calls('jobs/0123456789ab/logs');
    const query = new URL(call.url, 'http://localhost').searchParams;
    expect([query.get('rank'), query.get('follow')]).toEqual(['1', 'true']);
  });

  it('stops reading a followed log when aborted', async () => {
    server.routes.set('GET jobs/0123456789ab/logs', (_, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('first\n'); // and never ends
    });
    const abort = new AbortController();
    const pieces: string[] = [];
    const reading = readJobLog(
      '0123456789ab',
      { follow: true, signal: abort.signal },
      text => {
        pieces.push(text);
        abort.abort();
      },
      settings
    );
    await expect(reading).rejects.toHaveProperty('name', 'AbortError');
    expect(pieces).toEqual(['first\n']);
  });

  it("rejects a log request with the server's message", async () => {
    server.routes.set('GET jobs/0123456789ab/logs', (_, res) =>
      json(res, 400, { message: 'rank: job has ranks 0 to 1, got 7', field: 'rank' })
    );
    const error = await failureOf(
      readJobLog('0123456789ab', { rank: 7 }, () => undefined, settings)
    );
    expect(error).toBeInstanceOf(MLInfraError);
    expect(error.field).toBe('rank');
  });
});
