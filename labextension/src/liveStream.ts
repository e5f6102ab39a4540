/**
 * This tab's live updates: one websocket to the server (`mlinfra/api/v1/live`), which pushes
 * what changes in the user's jobs and kernels; reconnected by itself, with backoff.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';
import { ServerConnection } from '@jupyterlab/services';

import { API_NAMESPACE, ILiveMessage } from './tokens';

/** Where live updates come from: the server's websocket, or a test's stand-in. */
export interface ILiveSource extends IDisposable {
  /** Emitted with every message the server pushes. */
  readonly received: ISignal<ILiveSource, ILiveMessage>;
  /** Emitted when the connection drops (it is tried again by itself). */
  readonly dropped: ISignal<ILiveSource, void>;
  /** Connect, and stay connected until disposed. */
  start(): void;
}

/** The first wait before connecting again, doubled after each failure up to `MAX_RECONNECT` (ms). */
export const FIRST_RECONNECT = 1000;
export const MAX_RECONNECT = 30000;

/** The websocket URL of the live updates, with the token where the settings append it. */
export function liveUrl(settings: ServerConnection.ISettings): string {
  const url = URLExt.join(settings.wsUrl, API_NAMESPACE, 'live');
  return settings.appendToken && settings.token
    ? `${url}?token=${encodeURIComponent(settings.token)}`
    : url;
}

/** One websocket, reconnected with backoff (and a little jitter, so tabs do not stampede). */
export class LiveStream implements ILiveSource {
  constructor(settings?: ServerConnection.ISettings) {
    this._settings = settings ?? ServerConnection.makeSettings();
  }

  get received(): ISignal<this, ILiveMessage> {
    return this._received;
  }

  get dropped(): ISignal<this, void> {
    return this._dropped;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  start(): void {
    if (this._socket === null && this._timer === 0) {
      this._connect();
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    window.clearTimeout(this._timer);
    const socket = this._socket;
    this._socket = null;
    socket?.close();
    Signal.clearData(this);
  }

  private _connect(): void {
    this._timer = 0;
    if (this._isDisposed) {
      return;
    }
    let socket: WebSocket;
    try {
      socket = new this._settings.WebSocket(liveUrl(this._settings));
    } catch {
      this._again();
      return;
    }
    this._socket = socket;
    socket.onmessage = event => {
      let message: ILiveMessage;
      try {
        message = JSON.parse(String(event.data)) as ILiveMessage;
      } catch {
        return; // not ours to read
      }
      if (message.type === 'hello') {
        this._delay = FIRST_RECONNECT;
      }
      this._received.emit(message);
    };
    socket.onclose = () => {
      if (this._socket !== socket) {
        return; // disposed
      }
      this._socket = null;
      this._dropped.emit();
      this._again();
    };
  }

  private _again(): void {
    if (this._isDisposed) {
      return;
    }
    const wait = this._delay * (0.75 + Math.random() / 2);
    this._delay = Math.min(MAX_RECONNECT, this._delay * 2);
    this._timer = window.setTimeout(() => this._connect(), wait);
  }

  private _settings: ServerConnection.ISettings;
  private _socket: WebSocket | null = null;
  private _timer = 0;
  private _delay = FIRST_RECONNECT;
  private _isDisposed = false;
  private _received = new Signal<this, ILiveMessage>(this);
  private _dropped = new Signal<this, void>(this);
}
