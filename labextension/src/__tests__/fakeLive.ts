/** A stand-in for the server's live updates: a test pushes what the server would. */
import { Signal } from '@lumino/signaling';

import { ILiveSource } from '../liveStream';
import { ILiveMessage } from '../tokens';

export class FakeLive implements ILiveSource {
  readonly received: Signal<ILiveSource, ILiveMessage> = new Signal(this);
  readonly dropped: Signal<ILiveSource, void> = new Signal(this);
  started = false;
  isDisposed = false;

  start(): void {
    this.started = true;
  }

  dispose(): void {
    this.isDisposed = true;
  }

  push(message: ILiveMessage): void {
    this.received.emit(message);
  }

  drop(): void {
    this.dropped.emit();
  }
}
