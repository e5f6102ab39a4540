/**
 * A real HTTP server on a free local port that answers the REST paths a test gives it, and
 * records every request: the API client and the model talk to it over real fetch.
 */
import * as http from 'http';
import { AddressInfo } from 'net';

import { ServerConnection } from '@jupyterlab/services';

/** A recorded request: method, path (with query) and headers. */
export interface IRecorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Answers one request; `path` is the part after `<base>/mlinfra/api/v1/`, without query. */
export type Route = (
  request: IRecorded,
  response: http.ServerResponse,
  query: URLSearchParams
) => void;

export const TOKEN = 'test-token';
const PREFIX = '/base/mlinfra/api/v1/';

/** Answer `status` with a JSON body. */
export function json(response: http.ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'Content-Type': 'application/json' });
  response.end(JSON.stringify(body));
}

export class FakeServer {
  /** Routes by `METHOD path`, e.g. `GET jobs`; change them between steps of a test. */
  routes = new Map<string, Route>();
  readonly requests: IRecorded[] = [];

  /** Start listening; answers the settings that point ServerConnection at it. */
  async start(): Promise<ServerConnection.ISettings> {
    await new Promise<void>(resolve => this._server.listen(0, '127.0.0.1', resolve));
    const { port } = this._server.address() as AddressInfo;
    return ServerConnection.makeSettings({
      baseUrl: `http://127.0.0.1:${port}/base/`,
      wsUrl: `ws://127.0.0.1:${port}/base/`,
      token: TOKEN,
      appendToken: false
    });
  }

  stop(): Promise<void> {
    this._server.closeAllConnections();
    return new Promise(resolve => this._server.close(() => resolve()));
  }

  /** The recorded requests to `path` (without the API prefix or query). */
  calls(path: string): IRecorded[] {
    return this.requests.filter(r => r.url.split('?')[0] === PREFIX + path);
  }

  private _server = http.createServer((request, response) => {
    let body = '';
    request.on('data', chunk => (body += chunk));
    request.on('end', () => {
      const recorded: IRecorded = {
        method: request.method ?? 'GET',
        url: request.url ?? '',
        headers: request.headers,
        body
      };
      this.requests.push(recorded);
      const url = new URL(recorded.url, 'http://localhost');
      const path = url.pathname.startsWith(PREFIX) ? url.pathname.slice(PREFIX.length) : '';
      const route = this.routes.get(`${recorded.method} ${path}`);
      if (route) {
        route(recorded, response, url.searchParams);
      } else {
        json(response, 404, { message: `no route ${recorded.method} ${path}`, field: null });
      }
    });
  });
}
